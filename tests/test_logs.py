"""What the log says: local times with their offset, no watchfiles chatter, and a crash named
only after a crash."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import (
    DaemonProcess,
    daemon_env,
    daemon_log,
    free_port,
    wait_healthy,
    write_config,
)


@pytest.fixture
def text_log() -> Iterator[io.StringIO]:
    with daemon_log("text") as written:
        yield written


def test_a_line_carries_its_time_with_the_zone_offset_and_watchfiles_keeps_quiet(
    text_log: io.StringIO,
) -> None:
    logging.getLogger("watchfiles.main").info("12 changes detected")
    logging.getLogger("facturasd.pipeline.ingest").info("invoice #1 a.xml: taken", extra={})
    [line] = text_log.getvalue().splitlines()
    assert re.match(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d INFO    facturasd.pipeline.ingest: "
        r"invoice #1 a\.xml: taken$",
        line,
    ), line


@pytest.mark.slow
def test_a_crash_is_named_only_after_a_crash(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port=port)

    def start() -> DaemonProcess:
        daemon = DaemonProcess(config, daemon_env(), log_dir=tmp_path)
        wait_healthy(port, daemon)
        return daemon

    daemon = start()
    assert daemon.stop() == 0
    daemon = start()  # after a clean stop
    try:
        assert "crash" not in daemon.stderr().replace(str(tmp_path), "")
        daemon.proc.kill()
        daemon.proc.wait(30)
        daemon = start()  # after a kill -9
        assert "the previous run ended without a clean stop" in daemon.stderr()
        assert daemon.stop() == 0
    finally:
        daemon.kill()
