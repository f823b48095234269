"""The `facturasd` command: parses arguments, calls one function, prints."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import anyio

from facturasd import __version__
from facturasd.config import (
    Config,
    check_folders,
    effective,
    find_config_file,
    flatten,
    load_config,
)
from facturasd.constants import DATABASE_FILE, JobState
from facturasd.errors import AlreadyRunning, ConfigError, StoreError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facturasd",
        description="Checks, confirms with DIAN/SAT and books the e-invoices an office receives.",
    )
    parser.add_argument("--version", action="version", version=f"facturasd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "--config",
            help="configuration file (default: $FACTURASD_CONFIG, ./facturasd.toml, "
            "/etc/facturasd/facturasd.toml)",
        )
        return sub

    run = command("run", "run the daemon in the foreground")
    run.add_argument("--log-format", choices=["text", "json"], help="overrides daemon.log_format")
    check = command("check-config", "validate the configuration and print it, secrets masked")
    check.add_argument("--json", action="store_true", help="print JSON")
    backup = command("backup", "copy the database consistently, even while the daemon runs")
    backup.add_argument("dest", type=Path, help="a file to create, or a folder to put it in")
    inspect = command("inspect", "read received files and print what they contain (writes nothing)")
    inspect.add_argument("files", type=Path, nargs="+", metavar="FILE")
    inspect.add_argument("--json", action="store_true", help="print the normalized documents")
    inspect.add_argument("--lang", choices=["es", "en"], default="es", help="language of messages")
    jobs = command("jobs", "list the durable queue's jobs, or run dead ones again")
    jobs.add_argument("--state", choices=[s.value for s in JobState], help="only this state")
    jobs.add_argument("--limit", type=int, default=50)
    jobs.add_argument("--json", action="store_true", help="print JSON")
    jobs.add_argument(
        "--retry", type=int, metavar="ID", nargs="+", help="run these dead jobs again"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "inspect":
            return _inspect(args)
        config = load_config(find_config_file(args.config, os.environ), os.environ)
        if args.command == "run":
            return _run(config, args.log_format)
        if args.command == "check-config":
            return _check_config(config, args.json)
        if args.command == "backup":
            return _backup(config, args.dest)
        return _jobs(config, args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    except (AlreadyRunning, StoreError) as exc:
        print(f"facturasd: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _inspect(args: argparse.Namespace) -> int:
    """Reads and checks the files with the configured limits, companies and checks settings
    (defaults when no configuration is found); never opens the daemon's database, so it
    cannot tell a duplicate."""
    from facturasd.checks import Context, check
    from facturasd.clock import utcnow
    from facturasd.formats.reader import read, too_large
    from facturasd.formats.summary import render
    from facturasd.hashing import sha256_file

    try:
        path = find_config_file(args.config, os.environ)
    except ConfigError:
        if args.config:
            raise
        config = Config.model_validate({}, context={"base_dir": Path.cwd()})
    else:
        config = load_config(path, os.environ)
    limits = config.formats.limits()
    context = Context(
        now=utcnow(),
        companies=config.companies,
        accept_test_documents=config.checks.accept_test_documents,
        max_age=timedelta(seconds=config.checks.max_age),
        lang=args.lang,
    )
    inspections = []
    for file in args.files:
        try:
            size = file.stat().st_size
            if size > limits.max_file_bytes:  # refused unread: a huge file never fills memory
                inspections.append(too_large(str(file), size, sha256_file(file), limits, args.lang))
                continue
            with file.open("rb") as handle:  # a file that grows meanwhile is cut at the limit
                data = handle.read(limits.max_file_bytes + 1)
        except OSError as exc:
            print(f"facturasd: {file}: {exc.strerror}", file=sys.stderr)
            return EXIT_USAGE
        inspections += [check(i, context) for i in read(data, str(file), limits, args.lang)]
    if args.json:
        payload = [i.model_dump(mode="json") for i in inspections]
        print(
            json.dumps(payload[0] if len(payload) == 1 else payload, indent=2, ensure_ascii=False)
        )
    else:
        print("\n\n".join(render(i, args.lang) for i in inspections))
    ok = all(i.document is not None and i.verdict != "rejected" for i in inspections)
    return EXIT_OK if ok else EXIT_FAILURE


def _run(config: Config, log_format: str | None) -> int:
    from facturasd import logs
    from facturasd.daemon import Daemon

    logs.configure(log_format or config.daemon.log_format, config.daemon.log_level)
    try:
        anyio.run(Daemon(config).run)
    except OSError as exc:
        print(f"facturasd: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _check_config(config: Config, as_json: bool) -> int:
    report = check_folders(config)
    data = effective(config)
    if as_json:
        print(
            json.dumps(
                {"config": data, "errors": report.errors, "warnings": report.warnings},
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        for key, value in flatten(data).items():
            print(f"{key} = {json.dumps(value, ensure_ascii=False)}")
        for line in report.warnings:
            print(f"warning: {line}", file=sys.stderr)
        for line in report.errors:
            print(f"error: {line}", file=sys.stderr)
    return EXIT_USAGE if report.errors else EXIT_OK


def _backup(config: Config, dest: Path) -> int:
    from facturasd.store.db import backup_file

    result = anyio.run(backup_file, config.paths.state_dir / DATABASE_FILE, dest)
    print(
        f"{result.path}: {result.size} bytes, schema v{result.schema_version}, "
        f"{result.invoices} invoices, {result.jobs} jobs (integrity check ok)"
    )
    return EXIT_OK


def _jobs(config: Config, args: argparse.Namespace) -> int:
    from facturasd.store.db import Database
    from facturasd.store.queue import Queue

    async def work() -> list[dict[str, object]]:
        path = config.paths.state_dir / DATABASE_FILE
        if not path.is_file():
            raise StoreError(f"{path}: no database here (is paths.state_dir right?)")
        db = await Database.open(path, upgrade=False)
        try:
            queue = Queue(db, config.queues)
            if args.retry:
                found = [await queue.requeue(job_id) for job_id in args.retry]
            else:
                state = JobState(args.state) if args.state else None
                found = await queue.find(state=state, limit=args.limit)
            return [
                {
                    "id": j.id,
                    "queue": j.queue,
                    "kind": j.kind,
                    "state": j.state.value,
                    "attempts": j.attempts,
                    "max_attempts": j.max_attempts,
                    "last_error": j.last_error,
                }
                for j in found
            ]
        finally:
            await db.close()

    rows = anyio.run(work)
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        for row in rows:
            error = f"  {row['last_error']}" if row["last_error"] else ""
            print(
                f"{row['id']:>8} {row['state']:<7} {row['queue']:<18} {row['kind']:<16} "
                f"{row['attempts']}/{row['max_attempts']}{error}"
            )
    return EXIT_OK
