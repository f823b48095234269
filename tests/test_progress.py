"""Progress of long CLI work (SPEC §2.6): `backup`, `reprocess --all` and `report` over a range
or a month draw a bar on a terminal and write plain lines to a log or a pipe, always on stderr,
so what scripts read on stdout is what it was; and `reprocess --all` takes back exactly the
invoices a rules change can alter, each with its row in the audit trail."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
from pathlib import Path

import pytest

from facturasd.constants import DATABASE_FILE
from facturasd.progress import shown
from tests.documents import CUSTOMER_NIT
from tests.support import PYTHON, daemon_env, invoice, query, run_facturasd, take, write_config

COMPANY = (
    "[[companies]]\nslug = 'rg-glass'\nname = 'RG GLASS S.A.S.'\ncountry = 'CO'\n"
    f"tax_id = '{CUSTOMER_NIT}'\ncity = '11001'\n"
)
# An invoice to another company: it waits for a person (needs_review).
STRANGER = {"customer.nit": "900765432", "customer.dv": "6"}
# What a plain progress line says: the label, then the percentage.
LINE = re.compile(r"^(?P<label>[^:]+): (?P<percent>\d+) %")


def percentages(stderr: str, label: str) -> list[int]:
    """The percentages of `label`'s progress lines, in order; any other line is not one."""
    found = []
    for line in stderr.splitlines():
        match = LINE.match(line)
        assert match is not None and match["label"] == label, f"not a progress line: {line!r}"
        found.append(int(match["percent"]))
    return found


def on_a_terminal(*args: str) -> tuple[int, str, str]:
    """The command with its stderr on a pseudo-terminal, as a person at one runs it, and its
    stdout in a pipe: (exit status, stdout, what the terminal received)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [PYTHON, "-m", "facturasd", *args],
        stdout=subprocess.PIPE,
        stderr=follower,
        env=daemon_env(TERM="xterm-256color", COLUMNS="100"),
    )
    os.close(follower)
    drawn = drained(leader)
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out.decode(), drawn


def drained(leader: int) -> str:
    """All a pseudo-terminal receives until its other end is closed (one read may give only
    the first draw)."""
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # (EIO: the terminal's other end is closed and nothing is left)
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_plain_lines_say_the_start_each_tenth_and_the_end() -> None:
    log = io.StringIO()  # not a terminal, as a log file or a pipe
    with shown("reprocesando facturas", stream=log) as step:
        assert step is not None
        for done in range(1001):
            step(done, 1000)
    lines = log.getvalue().splitlines()
    assert lines[0] == "reprocesando facturas: 0 % (0/1000)"
    assert lines[-1] == "reprocesando facturas: 100 % (1000/1000)"
    assert [int(line.split(": ")[1].split(" %")[0]) for line in lines] == list(range(0, 101, 10))


def test_a_total_learned_late_and_nothing_to_do() -> None:
    log = io.StringIO()
    with shown("backup", counted=False, stream=log) as step:
        assert step is not None
        step(0, 0)  # nothing to do is done
    assert log.getvalue() == "backup: 100 %\n"


def test_short_work_shows_nothing() -> None:
    log = io.StringIO()
    with shown("escribiendo el informe", long=False, stream=log) as step:
        assert step is None
    assert log.getvalue() == ""


def test_a_terminal_gets_a_bar_that_ends_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    leader, follower = pty.openpty()
    with (
        open(follower, "w", encoding="utf-8", closefd=True) as terminal,
        shown("reprocessing invoices", stream=terminal) as step,
    ):
        assert step is not None
        for done in range(41):
            step(done, 40)
    drawn = drained(leader)
    assert "reprocessing invoices" in drawn
    assert "━" in drawn and "100%" in drawn and "40/40" in drawn
    assert "\x1b[" in drawn  # redrawn in place, not a line per step


def ledger_in_every_state(tmp_path: Path) -> tuple[Path, dict[str, tuple[int, str]]]:
    """A ledger with invoices checked, rejected, in review, unreadable, booked and discarded,
    read and checked as the daemon does: {file: (id, state)}."""
    config = write_config(tmp_path, COMPANY)
    take(
        config,
        {
            "revisada.xml": invoice(1),
            "mal total.xml": invoice(2, override={"total": "9999.00"}),
            "ajena.xml": invoice(3, override=STRANGER),
            "basura.xml": b"this is not an invoice",
            "contabilizada.xml": invoice(4),
            "descartada.xml": invoice(5),
            "revisada 2.xml": invoice(6),
        },
    )
    db = tmp_path / "state" / DATABASE_FILE
    ids = {name: id_ for id_, name in query(db, "SELECT id, original_name FROM invoices")}
    # Booked as the booking worker leaves one (Alegra is not part of this test).
    query(db, "UPDATE invoices SET state = 'booked' WHERE id = ?", (ids["contabilizada.xml"],))
    discarded = run_facturasd(
        "invoices", "discard", str(ids["descartada.xml"]), "--reason", "x", "--config", str(config)
    )
    assert discarded.returncode == 0, discarded.stderr
    found = {}
    for name, id_, state in query(db, "SELECT original_name, id, state FROM invoices"):
        assert isinstance(id_, int)
        found[str(name)] = (id_, str(state))
    return config, found


@pytest.mark.slow
def test_reprocess_all_takes_back_what_a_rules_change_can_alter(tmp_path: Path) -> None:
    config, before = ledger_in_every_state(tmp_path)
    assert {name: state for name, (_, state) in before.items()} == {
        "revisada.xml": "checked",
        "revisada 2.xml": "checked",
        "mal total.xml": "rejected",
        "ajena.xml": "needs_review",
        "basura.xml": "unreadable",
        "contabilizada.xml": "booked",
        "descartada.xml": "discarded",
    }
    db = tmp_path / "state" / DATABASE_FILE
    audited = query(db, "SELECT COALESCE(MAX(id), 0) FROM audit")[0][0]

    only_review = run_facturasd(
        "reprocess", "--all", "--state", "needs_review", "--reason", "reglas nuevas",
        "--config", str(config),
    )  # fmt: skip
    assert only_review.returncode == 0, only_review.stderr
    assert only_review.stdout == f"en cola de nuevo: #{before['ajena.xml'][0]}\n"

    done = run_facturasd(
        "reprocess", "--all", "--reason", "reglas nuevas", "--lang", "en", "--config", str(config)
    )
    assert done.returncode == 0, done.stderr
    again = sorted(before[name][0] for name in ("revisada.xml", "revisada 2.xml", "mal total.xml"))
    assert done.stdout == f"queued again: {', '.join(f'#{i}' for i in again)}\n"
    # On a pipe: plain lines, the first at the start, the last at the end.
    said = percentages(done.stderr, "reprocessing invoices")
    assert said[0] == 0 and said[-1] == 100 and said == sorted(said)
    assert "(3/3)" in done.stderr.splitlines()[-1]

    after = query(db, "SELECT original_name, state FROM invoices")
    assert {str(name): state for name, state in after} == {
        "revisada.xml": "received",
        "revisada 2.xml": "received",
        "mal total.xml": "received",
        "ajena.xml": "received",
        "basura.xml": "unreadable",
        "contabilizada.xml": "booked",
        "descartada.xml": "discarded",
    }
    rows = query(
        db, "SELECT action, target, reason, via FROM audit WHERE id > ? ORDER BY id", (audited,)
    )
    assert sorted(rows) == sorted(
        ("reprocess", f"invoice/{before[name][0]}", "reglas nuevas", "cli")
        for name in ("ajena.xml", "revisada.xml", "revisada 2.xml", "mal total.xml")
    )


@pytest.mark.slow
def test_many_invoices_reprocessed_are_counted_not_listed(tmp_path: Path) -> None:
    config = write_config(tmp_path, COMPANY)
    take(config, {f"f{n}.xml": invoice(n) for n in range(1, 13)})
    done = run_facturasd("reprocess", "--all", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "facturas en cola de nuevo: 12\n"
    assert done.stderr.splitlines()[-1] == "reprocesando facturas: 100 % (12/12)"


@pytest.mark.slow
def test_reprocess_takes_ids_or_all_and_the_filters_with_all(tmp_path: Path) -> None:
    config = str(write_config(tmp_path))
    for args in ((), ("1", "--all"), ("1", "--state", "checked")):
        refused = run_facturasd("reprocess", *args, "--config", config)
        assert refused.returncode == 2
        assert "reprocess:" in refused.stderr.splitlines()[-1]
    booked = run_facturasd("reprocess", "--all", "--state", "booked", "--config", config)
    assert booked.returncode == 2 and "invalid choice: 'booked'" in booked.stderr


@pytest.mark.slow
def test_reprocess_all_on_a_terminal_draws_a_bar(tmp_path: Path) -> None:
    config, _ = ledger_in_every_state(tmp_path)
    code, out, drawn = on_a_terminal("reprocess", "--all", "--lang", "en", "--config", str(config))
    assert code == 0, drawn
    assert out.startswith("queued again: #")
    assert "reprocessing invoices" in drawn and "━" in drawn and "100%" in drawn


def report_ledger(tmp_path: Path) -> Path:
    config = write_config(tmp_path, COMPANY)
    take(config, {f"f{n}.xml": invoice(n) for n in range(1, 6)})
    return config


@pytest.mark.slow
def test_a_report_over_a_range_says_how_far_it_is_and_prints_its_json(tmp_path: Path) -> None:
    config = str(report_ledger(tmp_path))
    ranged = run_facturasd(
        "report", "--from", "2026-01-01", "--json", "--lang", "en", "--config", config
    )
    assert ranged.returncode == 0, ranged.stderr
    paths = json.loads(ranged.stdout)  # stdout is the JSON alone
    assert sorted(paths) == ["csv", "json", "md"] and all(Path(p).exists() for p in paths.values())
    said = percentages(ranged.stderr, "writing the report")
    assert said[0] == 0 and said[-1] == 100 and said == sorted(said) and len(said) > 2

    month = run_facturasd("report", "--month", "2026-11", "--config", config)
    assert month.returncode == 0, month.stderr
    assert [Path(p).suffix for p in month.stdout.splitlines()] == [".md", ".json", ".csv"]
    assert percentages(month.stderr, "escribiendo el informe")[-1] == 100

    today = run_facturasd("report", "--json", "--config", config)  # one day: quick, quiet
    assert today.returncode == 0 and today.stderr == ""


@pytest.mark.slow
def test_a_report_over_a_range_on_a_terminal_draws_a_bar(tmp_path: Path) -> None:
    config = str(report_ledger(tmp_path))
    code, out, drawn = on_a_terminal("report", "--from", "2026-01-01", "--json", "--config", config)
    assert code == 0, drawn
    assert sorted(json.loads(out)) == ["csv", "json", "md"]
    assert "escribiendo el informe" in drawn and "━" in drawn and "100%" in drawn


def large_ledger(tmp_path: Path) -> Path:
    """A ledger of some 20 MB: the copy takes a while."""
    config = write_config(tmp_path)
    take(config, {"f.xml": invoice(1)})
    db = tmp_path / "state" / DATABASE_FILE
    with_rows = "INSERT INTO kv VALUES (?, ?, 0)"
    for n in range(20):
        query(db, with_rows, (f"relleno-{n}", os.urandom(512 * 1024).hex()))
    return config


@pytest.mark.slow
def test_a_backup_says_how_far_it_is_and_what_it_made(tmp_path: Path) -> None:
    config = str(large_ledger(tmp_path))
    made = run_facturasd("backup", str(tmp_path / "copia.db"), "--config", config)
    assert made.returncode == 0, made.stderr
    assert re.fullmatch(
        rf"{tmp_path}/copia\.db: \d+ bytes, schema v\d+, 1 invoices, \d+ jobs "
        r"\(integrity check ok\)\n",
        made.stdout,
    )
    said = percentages(made.stderr, "backup")
    # The start, the copy made (the check is the last fifth), and the end.
    assert said[0] == 0 and 80 in said and said[-1] == 100 and said == sorted(said)

    code, out, drawn = on_a_terminal("backup", str(tmp_path / "copia 2.db"), "--config", config)
    assert code == 0, drawn
    assert out.startswith(f"{tmp_path}/copia 2.db: ")
    assert "backup" in drawn and "━" in drawn and "100%" in drawn
