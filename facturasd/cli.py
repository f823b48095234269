"""The `facturasd` command: parses arguments, calls one function, prints."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import anyio

from facturasd import __version__
from facturasd.config import (
    Config,
    check_folders,
    effective,
    find_config_file,
    flatten,
    inert_warnings,
    load_config,
)
from facturasd.constants import DATABASE_FILE, InvoiceState, JobState
from facturasd.errors import (
    AlreadyRunning,
    CannotListen,
    ConfigError,
    LedgerMissing,
    ReviewRefused,
    StoreError,
)
from facturasd.findings import LANGUAGES, Finding, Language, shown

if TYPE_CHECKING:
    from facturasd.store.db import Database

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
LANG_HELP = "language of what is printed (default: reports.language)"


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
    run.add_argument(
        "--new-ledger",
        action="store_true",
        help="start an empty ledger although the archive holds files (else refused: "
        "restore a backup or run rebuild-ledger)",
    )
    check = command("check-config", "validate the configuration and print it, secrets masked")
    check.add_argument("--json", action="store_true", help="print JSON")
    backup = command("backup", "copy the database consistently, even while the daemon runs")
    backup.add_argument(
        "dest", help="a file to create, or a folder (that exists) to put it in, named by time"
    )
    rebuild = command(
        "rebuild-ledger",
        "build a lost ledger again from archive/, rejected/ and duplicates/ (daemon stopped)",
    )
    rebuild.add_argument(
        "--add-missing",
        action="store_true",
        help="the ledger has invoices (a restored backup): add only the archived files it "
        "does not know",
    )
    inspect = command("inspect", "read received files and print what they contain (writes nothing)")
    inspect.add_argument("files", type=Path, nargs="+", metavar="FILE")
    inspect.add_argument("--json", action="store_true", help="print the normalized documents")
    inspect.add_argument("--lang", choices=LANGUAGES, help=LANG_HELP)
    jobs = command("jobs", "list the durable queue's jobs, or run dead ones again")
    jobs.add_argument("--state", choices=[s.value for s in JobState], help="only this state")
    jobs.add_argument("--limit", type=int, default=50)
    jobs.add_argument("--json", action="store_true", help="print JSON")
    jobs.add_argument(
        "--retry", type=int, metavar="ID", nargs="+", help="run these dead jobs again"
    )
    reprocess = command("reprocess", "parse and check invoices again (e.g. after a rules change)")
    reprocess.add_argument("ids", type=int, nargs="+", metavar="ID")
    reprocess.add_argument("--reason", default="asked from the command line")
    invoices = command("invoices", "the ledger: list, show, and resolve what needs review")
    actions = invoices.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="invoices, oldest first")
    listing.add_argument("--state", action="append", choices=[s.value for s in InvoiceState])
    listing.add_argument("--since", type=date.fromisoformat, help="received on or after")
    listing.add_argument("--issued-since", type=date.fromisoformat, help="issued on or after")
    listing.add_argument("--company")
    listing.add_argument("--limit", type=int)
    listing.add_argument("--json", action="store_true", help="print JSON")
    show = actions.add_parser("show", help="one invoice: document, findings, history, files")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true", help="print JSON")
    show.add_argument("--lang", choices=LANGUAGES, help=LANG_HELP)
    assign = actions.add_parser("assign", help="give an invoice to a company")
    assign.add_argument("id", type=int)
    assign.add_argument("--company", required=True)
    assign.add_argument("--reason", default="assigned from the command line")
    accept = actions.add_parser("accept", help="accept an invoice in review, warnings and all")
    accept.add_argument("id", type=int)
    accept.add_argument("--reason", required=True)
    discard = actions.add_parser("discard", help="set an invoice aside")
    discard.add_argument("id", type=int)
    discard.add_argument("--reason", required=True)
    for sub in (listing, show, assign, accept, discard):
        # Also after the action; given before it, it is not overwritten here.
        sub.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "inspect":
            return _inspect(args)
        config = load_config(find_config_file(args.config, os.environ), os.environ)
        if args.command == "run":
            return _run(config, args.log_format, args.new_ledger)
        if args.command == "check-config":
            return _check_config(config, args.json)
        if args.command == "backup":
            return _backup(config, args.dest)
        if args.command == "rebuild-ledger":
            return _rebuild_ledger(config, args.add_missing)
        if args.command in ("invoices", "reprocess"):
            return _invoices(config, args)
        return _jobs(config, args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    except LedgerMissing as exc:
        # Exit 2, as for a refused configuration: systemd does not restart it in a loop.
        print(f"facturasd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (AlreadyRunning, CannotListen, StoreError, ReviewRefused) as exc:
        print(f"facturasd: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _inspect(args: argparse.Namespace) -> int:
    """Reads and checks the files with the configured limits, companies and checks settings
    (defaults when no configuration is found); never opens the daemon's database, so it
    cannot tell a duplicate."""
    from facturasd.checks import check
    from facturasd.clock import utcnow
    from facturasd.formats.summary import render
    from facturasd.pipeline.process import read_file

    try:
        path = find_config_file(args.config, os.environ)
    except ConfigError:
        if args.config:
            raise
        config = Config.model_validate({}, context={"base_dir": Path.cwd()})
    else:
        config = load_config(path, os.environ)
    lang = args.lang or config.reports.language
    limits = config.formats.limits()
    context = config.checks.context(config.companies, utcnow())
    inspections = []
    for file in args.files:
        try:
            found = read_file(file, str(file), limits)
        except OSError as exc:
            print(f"facturasd: {file}: {exc.strerror}", file=sys.stderr)
            return EXIT_USAGE
        inspections += [check(i, context) for i in found]
    if args.json:
        payload = [i.shown(lang) for i in inspections]
        print(
            json.dumps(payload[0] if len(payload) == 1 else payload, indent=2, ensure_ascii=False)
        )
    else:
        print("\n\n".join(render(i, lang) for i in inspections))
    ok = all(i.document is not None and i.verdict != "rejected" for i in inspections)
    return EXIT_OK if ok else EXIT_FAILURE


def _run(config: Config, log_format: str | None, new_ledger: bool) -> int:
    from facturasd import logs
    from facturasd.daemon import Daemon

    logs.configure(log_format or config.daemon.log_format, config.daemon.log_level)
    for line in inert_warnings(config, os.environ):
        logging.getLogger("facturasd.config").warning("%s", line)
    try:
        anyio.run(Daemon(config, new_ledger=new_ledger).run)
    except OSError as exc:
        print(f"facturasd: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _check_config(config: Config, as_json: bool) -> int:
    report = check_folders(config)
    running, problems = _start_up(config)
    errors = report.errors + problems
    warnings = inert_warnings(config, os.environ) + report.warnings
    data = effective(config)
    if as_json:
        print(
            json.dumps(
                {"config": data, "errors": errors, "warnings": warnings, "running": running},
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        for key, value in flatten(data).items():
            print(f"{key} = {json.dumps(value, ensure_ascii=False)}")
        if running:
            print(
                f"daemon running (pid {running}): http.bind and the database are its own, "
                "not tried",
                file=sys.stderr,
            )
        for line in warnings:
            print(f"warning: {line}", file=sys.stderr)
        for line in errors:
            print(f"error: {line}", file=sys.stderr)
    return EXIT_USAGE if errors else EXIT_OK


def _start_up(config: Config) -> tuple[str | None, list[str]]:
    """What would stop `run` after check-config passed: the pid of a daemon already running
    (whose port and database these are; then not tried), and the problems: the port taken, no
    ledger beside an archive of files."""
    from facturasd.daemon import running_pid
    from facturasd.pipeline.rebuild import refuse_new_ledger
    from facturasd.web.app import listen

    problems = []
    running = running_pid(config.paths.state_dir)
    if running is None:
        try:
            listen(config.http).close()
        except CannotListen as exc:
            problems.append(str(exc))
    try:
        refuse_new_ledger(config)
    except LedgerMissing as exc:
        problems.append(str(exc))
    return running, problems


def _backup(config: Config, dest: str) -> int:
    from facturasd.store.db import backup_file

    result = anyio.run(backup_file, config.paths.state_dir / DATABASE_FILE, dest)
    print(
        f"{result.path}: {result.size} bytes, schema v{result.schema_version}, "
        f"{result.invoices} invoices, {result.jobs} jobs (integrity check ok)"
    )
    return EXIT_OK


def _rebuild_ledger(config: Config, add_missing: bool) -> int:
    from facturasd.daemon import state_lock
    from facturasd.pipeline.rebuild import Rebuild, Rebuilt
    from facturasd.services import build

    async def work() -> Rebuilt:
        async with state_lock(config.paths.state_dir), build(config) as services:
            rebuild = Rebuild(services.db, services.lifecycle, services.folders, zone=services.zone)
            return await rebuild(add_missing=add_missing)

    done = anyio.run(work)
    print(
        f"ledger rebuilt: {done.queued} file(s) recorded, to be read and checked again by the "
        f"daemon when it starts; {done.duplicates} duplicate(s) of a recorded file; "
        f"{done.known} already in the ledger"
    )
    return EXIT_OK


def _jobs(config: Config, args: argparse.Namespace) -> int:
    from facturasd.store.queue import Queue

    async def work() -> list[dict[str, object]]:
        async with _database(config) as db:
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


def _database_file(config: Config) -> Path:
    """The daemon's database file; StoreError if there is none (a command never creates it)."""
    path = config.paths.state_dir / DATABASE_FILE
    if not path.is_file():
        raise StoreError(f"{path}: no database here (is paths.state_dir right?)")
    return path


@asynccontextmanager
async def _database(config: Config) -> AsyncIterator[Database]:
    """The daemon's database, opened beside it (never migrated from a command)."""
    from facturasd.store.db import Database

    db = await Database.open(_database_file(config), upgrade=False)
    try:
        yield db
    finally:
        await db.close()


def _invoices(config: Config, args: argparse.Namespace) -> int:
    from facturasd.pipeline.review import Review
    from facturasd.services import build
    from facturasd.store import ledger

    zone = ZoneInfo(config.daemon.timezone)
    action = "reprocess" if args.command == "reprocess" else args.action

    async def work() -> object:
        _database_file(config)
        async with build(config, upgrade=False) as services:
            db = services.db
            review = Review(db, services.lifecycle, config.companies, getpass.getuser())
            if action == "reprocess":
                for invoice_id in args.ids:
                    await review.reprocess(invoice_id, args.reason)
                return f"queued again: {', '.join(f'#{i}' for i in args.ids)}"
            if action == "assign":
                state = await review.assign(args.id, args.company, args.reason)
                return f"#{args.id} assigned to {args.company}: {state}"
            if action == "accept":
                await review.accept(args.id, args.reason)
                return f"#{args.id} accepted: checked"
            if action == "discard":
                await review.discard(args.id, args.reason)
                return f"#{args.id} discarded"
            if action == "show":
                invoice = await db.read(partial(ledger.get, invoice_id=args.id))
                if invoice is None:
                    raise ReviewRefused(f"there is no invoice #{args.id}")
                return {
                    **_invoice_row(invoice, zone),
                    "history": [
                        {**asdict(e), "at": _local(e.at, zone)}
                        for e in await ledger.events(db, args.id)
                    ],
                    "inspection": _inspection(
                        await ledger.inspection(db, args.id), args.lang or config.reports.language
                    ),
                }
            since = _start_of(args.since, zone) if args.since else None
            found = await ledger.search(
                db,
                states=args.state or (),
                since=since,
                issued_since=args.issued_since.isoformat() if args.issued_since else None,
                company=args.company,
                limit=args.limit,
            )
            return [_invoice_row(invoice, zone) for invoice in found]

    result = anyio.run(work)
    if isinstance(result, str):
        print(result)
    elif getattr(args, "json", False):
        print(json.dumps(result, indent=2, ensure_ascii=False))
    elif isinstance(result, list):
        for row in result:
            print(
                f"{row['id']:>6} {row['state']:<12} {row['received_at']}  "
                f"{row['number'] or '—':<12} {row['uuid'] or '—'}  {row['original_name']}"
            )
    else:
        assert isinstance(result, dict)
        print(_show(result))
    return EXIT_OK


def _inspection(stored: dict[str, Any] | None, lang: Language) -> dict[str, Any] | None:
    """The ledger's inspection of an invoice, its findings' messages rendered in `lang`. Kept
    as the stored JSON, not read into today's Inspection: a row an earlier version wrote need
    not fit it."""
    if stored is None:
        return None
    findings = [shown(Finding.model_validate(f), lang) for f in stored.get("findings", [])]
    return {**stored, "findings": findings}


def _invoice_row(invoice: Any, zone: ZoneInfo) -> dict[str, Any]:
    row = asdict(invoice)
    row["state"] = str(invoice.state)
    row["received_at"] = _local(invoice.received_at, zone)
    row["updated_at"] = _local(invoice.updated_at, zone)
    return row


def _local(timestamp: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(timestamp, zone).isoformat(timespec="seconds")


def _start_of(day: date, zone: ZoneInfo) -> float:
    return datetime.combine(day, datetime.min.time(), zone).timestamp()


def _show(found: dict[str, Any]) -> str:
    lines = [
        f"#{found['id']} {found['state']} ({found['compliance']})  {found['original_name']}",
        f"  file: {found['path']}",
        f"  received {found['received_at']} as {found['inbox_path']}",
        f"  {found['format'] or '—'} {found['kind'] or ''} {found['number'] or ''} "
        f"uuid {found['uuid'] or '—'} total {found['total'] or '—'} {found['currency'] or ''}",
        f"  issuer {found['issuer_tax_id'] or '—'} {found['issuer_name'] or ''}; receiver "
        f"{found['receiver_tax_id'] or '—'}; company {found['company'] or '—'}",
    ]
    inspection = found.get("inspection") or {}
    lines += [
        f"  [{f['severity']}] {f['code']}: {f['message']} ({f['path']})"
        for f in inspection.get("findings", [])
    ]
    lines += [
        f"  {e['at']} {e['state'] or '':<12} {e['actor']}: {e['reason']}" for e in found["history"]
    ]
    return "\n".join(line.rstrip() for line in lines)
