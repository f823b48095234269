"""The `facturasd` command: parses arguments, calls one function, prints."""

from __future__ import annotations

import argparse
import json
import os
import pwd
import sys
import unicodedata
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import anyio

from facturasd import __version__, wording
from facturasd.config import (
    Config,
    RateLimit,
    check_folders,
    effective,
    find_config_file,
    flatten,
    load_config,
)
from facturasd.constants import (
    DATABASE_FILE,
    ComplianceStatus,
    InvoiceState,
    JobState,
    QueueName,
)
from facturasd.errors import (
    AlreadyRunning,
    CannotListen,
    ConfigError,
    LedgerMissing,
    ReviewRefused,
    StoreError,
)
from facturasd.findings import LANGUAGES, Language, located
from facturasd.rows import alert_row, invoice_detail, invoice_row, local

if TYPE_CHECKING:
    import sqlite3

    from facturasd.progress import Step
    from facturasd.store import ledger
    from facturasd.store.db import Database
    from facturasd.store.queue import Job

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
LANG_HELP = "language of what is printed (default: reports.language)"
CONFIG_HELP = (
    "configuration file (default: $FACTURASD_CONFIG, ./facturasd.toml, "
    "/etc/facturasd/facturasd.toml)"
)
DAY_FORMATS = ("%Y-%m-%d", "%d/%m/%Y")
DAY_EXAMPLES = "2026-11-29 or 29/11/2026"
# Rows a table shows unless told, the newest: a screenful that still says how many are left.
# JSON is read by tools, which get every row unless told.
TABLE_LIMIT = 50
LIMIT_HELP = f"at most N, the newest (a table shows {TABLE_LIMIT} unless told, --json all)"

# The words of the listings' tables, in each language `--lang` takes.
LISTING_WORDS: dict[Language, dict[str, str]] = {
    "es": {
        "id": "ID",
        "state": "ESTADO",
        "compliance": "DIAN/SAT",
        "received": "RECIBIDA",
        "issued": "EMITIDA",
        "number": "NÚMERO",
        "issuer": "EMISOR",
        "total": "TOTAL",
        "currency": "MONEDA",
        "uuid": "CUFE/UUID",
        "file": "ARCHIVO",
        "queue": "COLA",
        "kind": "TIPO",
        "invoice": "FACTURA",
        "attempts": "INTENTOS",
        "created": "CREADO",
        # A job's error is the exception's own text, in English as the log has it.
        "error": "ÚLTIMO ERROR (EN INGLÉS)",
        "no invoices": "No hay facturas que mostrar.",
        "no jobs": "No hay trabajos que mostrar.",
        "more invoices": "… y {more} más antiguas: --limit {matched} las muestra todas.",
        "more jobs": "… y {more} más antiguos: --limit {matched} los muestra todos.",
        "no companies": "--company {slug}: no hay ninguna empresa configurada (se declaran "
        "con [[companies]] en el archivo de configuración)",
        "no such company": "--company {slug}: no hay tal empresa (empresas: {known})",
    },
    "en": {
        "id": "ID",
        "state": "STATE",
        "compliance": "DIAN/SAT",
        "received": "RECEIVED",
        "issued": "ISSUED",
        "number": "NUMBER",
        "issuer": "ISSUER",
        "total": "TOTAL",
        "currency": "CURRENCY",
        "uuid": "CUFE/UUID",
        "file": "FILE",
        "queue": "QUEUE",
        "kind": "KIND",
        "invoice": "INVOICE",
        "attempts": "ATTEMPTS",
        "created": "CREATED",
        "error": "LAST ERROR",
        "no invoices": "No invoices to show.",
        "no jobs": "No jobs to show.",
        "more invoices": "… and {more} older: --limit {matched} shows them all.",
        "more jobs": "… and {more} older: --limit {matched} shows them all.",
        "no companies": "--company {slug}: no companies are configured (they are declared "
        "with [[companies]] in the configuration file)",
        "no such company": "--company {slug}: no such company (companies: {known})",
    },
}
# What `reprocess --all` takes: the invoices whose checks a rules change can alter. Not one
# being read (received), booked or on its way there (booking), set aside (discarded), or that
# is not an invoice of its own (unreadable, duplicate, linked).
REPROCESSED = (InvoiceState.REJECTED, InvoiceState.NEEDS_REVIEW, InvoiceState.CHECKED)
# Invoices a summary names one by one; more are counted.
NAMED = 10
# Columns of numbers, aligned on the right.
NUMERIC_COLUMNS = frozenset({"id", "total", "invoice", "attempts"})
# Character classes a terminal does not show as themselves: controls (a newline, an escape
# sequence), format characters (a right-to-left override that disguises a name), separators.
UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


class UsageRefused(Exception):
    """A command asked for what the configuration does not have (exit 2)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facturasd",
        description="Checks, confirms with DIAN/SAT and books the e-invoices an office receives.",
    )
    parser.add_argument("--version", action="version", version=f"facturasd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config", help=CONFIG_HELP)
        return sub

    run = command("run", "run the daemon in the foreground")
    run.add_argument("--log-format", choices=["text", "json"], help="overrides daemon.log_format")
    run.add_argument(
        "--new-ledger",
        action="store_true",
        help="start an empty ledger although the archive holds files (else refused: "
        "restore a backup or run rebuild-ledger)",
    )
    run.add_argument(
        "--sandbox",
        action="store_true",
        help="with local SAT, DIAN and Alegra servers on sandbox.bind instead of the real "
        "services, to try facturasd offline",
    )
    check = command("check-config", "validate the configuration and print it, secrets masked")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.add_argument(
        "--online",
        action="store_true",
        help="also ask Alegra whether it accepts the configured credentials",
    )
    doctor = command(
        "doctor",
        "look over the installation and say what to fix, one line each (exit 1 on an error)",
    )
    doctor.add_argument(
        "--online",
        action="store_true",
        help="an upstream (SAT, DIAN, Alegra) unreachable or not configured is an error, "
        "not a warning",
    )
    doctor.add_argument("--json", action="store_true", help="print JSON")
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
    jobs = command("jobs", "list the durable queue's jobs, newest first, or run dead ones again")
    jobs.add_argument("--state", choices=[s.value for s in JobState], help="only this state")
    jobs.add_argument("--limit", type=_positive, metavar="N", help=LIMIT_HELP)
    jobs.add_argument("--json", action="store_true", help="print JSON")
    jobs.add_argument("--lang", choices=LANGUAGES, help=LANG_HELP)
    jobs.add_argument("--queue", choices=[q.value for q in QueueName], help="only this queue")
    retry = jobs.add_mutually_exclusive_group()
    retry.add_argument(
        "--retry", type=int, metavar="ID", nargs="+", help="run these dead jobs again"
    )
    retry.add_argument(
        "--retry-dead",
        action="store_true",
        help="run every dead job (of --queue) again, once what made them fail is fixed",
    )
    jobs.add_argument(
        "--reason",
        default="run again from the command line",
        help="with --retry or --retry-dead: why, for the audit trail",
    )
    ask = command(
        "retry",
        "ask the tax authority again now about checked invoices (or, past it, book them in "
        "Alegra again once what Alegra refused is fixed), through the queue of the running "
        "daemon (or of its next start); their retries count anew",
    )
    # (IDs or one flag: a positional that may be empty cannot be in argparse's exclusive
    # groups; `main` checks it.)
    ask.add_argument("ids", type=int, nargs="*", metavar="ID", help="these invoices")
    chosen = ask.add_mutually_exclusive_group()
    for status, which in (
        (ComplianceStatus.FAILED, "the authority denied, or asked too often in vain"),
        (ComplianceStatus.FALLBACK, "waiting for an authority that gave no answer"),
        (ComplianceStatus.PENDING, "left waiting (e.g. not asked for want of a DIAN certificate)"),
    ):
        chosen.add_argument(
            f"--{status.lower()}",
            action="store_const",
            const=status,
            dest="status",
            help=f"every checked invoice {which}: {status}",
        )
    ask.add_argument(
        "--reason",
        default="asked from the command line",
        help="why, for the history (default: %(default)s)",
    )
    ask.add_argument("--lang", choices=LANGUAGES, help=LANG_HELP)
    reprocess = command("reprocess", "parse and check invoices again (e.g. after a rules change)")
    # (IDs or --all, as `retry`: `main` checks it.)
    reprocess.add_argument("ids", type=int, nargs="*", metavar="ID", help="these invoices")
    reprocess.add_argument(
        "--all",
        action="store_true",
        help="every invoice a rules change can alter ("
        + ", ".join(REPROCESSED)
        + "), narrowed by the filters below, as `invoices list` takes them",
    )
    _filter_arguments(reprocess, REPROCESSED)
    reprocess.add_argument("--reason", default="asked from the command line")
    reprocess.add_argument("--lang", choices=LANGUAGES, help=LANG_HELP)
    invoices = command("invoices", "the ledger: list, show, and resolve what needs review")
    actions = invoices.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing_help = "invoices, newest first (the order of jobs)"
    listing = actions.add_parser("list", help=listing_help, description=listing_help)
    _filter_arguments(listing, [s.value for s in InvoiceState])
    listing.add_argument("--limit", type=_positive, metavar="N", help=LIMIT_HELP)
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.add_argument("--lang", choices=LANGUAGES, help=LANG_HELP)
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
    bill_help = (
        "settle an invoice that may already be booked in Alegra, once a person looked: link "
        "the bill found there, or say there is none (it is then posted)"
    )
    bill = actions.add_parser("bill", help=bill_help, description=bill_help)
    bill.add_argument("id", type=int)
    found = bill.add_mutually_exclusive_group(required=True)
    found.add_argument("--alegra-bill", metavar="BILL_ID", help="the bill's id in Alegra")
    found.add_argument("--none", action="store_true", help="Alegra has no bill for it")
    bill.add_argument("--reason", required=True)
    for action in (assign, accept, discard, bill):
        action.add_argument("--lang", choices=LANGUAGES, help=LANG_HELP)
    _alerts_parser(command("alerts", ALERTS_HELP))
    _status_parsers(command)
    _audit_parser(command("audit", AUDIT_HELP))
    report_help = (
        "write the daily report of the invoices received (today's so far unless told) or the "
        "monthly tax summary in paths.reports, and print the files written"
    )
    report = command("report", report_help)
    period = report.add_mutually_exclusive_group()
    period.add_argument(
        "--date", type=_day, metavar="DAY", help=f"the invoices received on DAY: {DAY_EXAMPLES}"
    )
    period.add_argument(
        "--from", dest="first", type=_day, metavar="DAY", help="from DAY to --to (or today)"
    )
    period.add_argument(
        "--month",
        type=_month,
        metavar="YYYY-MM",
        help="the tax summary of the invoices issued in the month",
    )
    report.add_argument("--to", dest="last", type=_day, metavar="DAY", help="with --from: to DAY")
    report.add_argument("--lang", choices=LANGUAGES, help=LANG_HELP)
    report.add_argument("--json", action="store_true", help="print the files' paths as JSON")
    sandbox_help = (
        "local SAT, DIAN and Alegra servers that speak their protocols, to try facturasd offline"
    )
    sandbox = commands.add_parser("sandbox", help=sandbox_help, description=sandbox_help)
    sandbox.add_argument("--bind", default="127.0.0.1:8099", help="address (default: %(default)s)")
    sandbox.add_argument(
        "--documents", type=Path, metavar="DIR", help="every document under DIR is known, in force"
    )
    sandbox.add_argument(
        "--dian-trust",
        type=Path,
        metavar="CERT",
        help="PEM certificate(s) DIAN requests must be signed with (default: any)",
    )
    sandbox.add_argument(
        "--alegra-user", metavar="EMAIL", help="Alegra's user (default: sandbox@facturasd.local)"
    )
    sandbox.add_argument("--alegra-token", metavar="TOKEN", help="its token (default: sandbox)")
    sandbox.add_argument(
        "--alegra-rate",
        type=_rate,
        metavar="RATE",
        help='Alegra requests a user may make, as "150/m" (the default) or "50/s"',
    )
    sandbox.add_argument(
        "--alegra-state",
        type=Path,
        metavar="FILE",
        help="Alegra's account read from FILE at start (when it exists), written there at stop",
    )
    for sub in (listing, show, assign, accept, discard):
        # Also after the action; given before it, it is not overwritten here.
        sub.add_argument("--config", default=argparse.SUPPRESS, help=CONFIG_HELP)
    return parser


def _filter_arguments(sub: argparse.ArgumentParser, states: Sequence[str]) -> None:
    """The filters of `invoices list` (`_filter` reads them), for `sub`, whose invoices are
    in one of `states`."""
    sub.add_argument(
        "--state",
        action="append",
        choices=states,
        help="only this state; given more than once, any of them",
    )
    sub.add_argument(
        "--compliance",
        action="extend",
        type=_statuses,
        metavar="STATUS",
        help="only this status with the tax authority ("
        + ", ".join(ComplianceStatus)
        + ", in any case); given more than once or as a comma list, any of them",
    )
    sub.add_argument(
        "--since", type=_day, metavar="DAY", help=f"received on or after DAY: {DAY_EXAMPLES}"
    )
    sub.add_argument(
        "--issued-since", type=_day, metavar="DAY", help=f"issued on or after DAY: {DAY_EXAMPLES}"
    )
    sub.add_argument(
        "--company",
        metavar="SLUG",
        help="only the invoices of this company (its slug in [[companies]])",
    )


def _day(text: str) -> date:
    for form in DAY_FORMATS:
        try:
            return datetime.strptime(text, form).date()
        except ValueError:
            continue
    raise argparse.ArgumentTypeError(f"{text!r} is not a day: write it {DAY_EXAMPLES}")


def _statuses(text: str) -> list[ComplianceStatus]:
    """`--compliance`: a status, or a comma list of them, in any case."""
    found = []
    for word in text.split(","):
        try:
            found.append(ComplianceStatus(word.strip().upper()))
        except ValueError:
            known = ", ".join(ComplianceStatus)
            raise argparse.ArgumentTypeError(
                f"{word.strip()!r} is not a compliance status: {known}"
            ) from None
    return found


def _rate(text: str) -> RateLimit:
    """A rate as the configuration writes them ("150/m")."""
    try:
        return RateLimit.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number above 0")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "retry" and bool(args.ids) == (args.status is not None):
        parser.error("retry: give the invoices' IDs, or one of --failed, --fallback, --pending")
    if args.command == "reprocess" and bool(args.ids) == args.all:
        parser.error("reprocess: give the invoices' IDs, or --all")
    if args.command == "reprocess" and args.ids and _filtered(args):
        parser.error("reprocess: the filters (--state, --since…) go with --all, not with IDs")
    try:
        if args.command == "inspect":
            return _inspect(args)
        if args.command == "sandbox":
            return _sandbox(args)
        config = load_config(find_config_file(args.config, os.environ), os.environ)
        if args.command == "run":
            return _run(config, args.log_format, args.new_ledger, args.sandbox)
        if args.command == "check-config":
            return _check_config(config, args.json, args.online)
        if args.command == "doctor":
            return _doctor(config, args.json, args.online)
        if args.command == "backup":
            return _backup(config, args.dest)
        if args.command == "rebuild-ledger":
            return _rebuild_ledger(config, args.add_missing)
        if args.command == "invoices" and args.action == "list":
            return _invoice_list(config, args)
        if args.command == "retry":
            return _retry(config, args)
        if args.command == "reprocess":
            return _reprocess(config, args)
        if args.command == "invoices":
            return _invoices(config, args)
        if args.command == "alerts":
            return _alerts(config, args)
        if args.command == "audit":
            return _audit(config, args)
        if args.command == "report":
            return _report(config, args)
        if args.command in ("status", "monitor"):
            return _status(config, args)
        return _jobs(config, args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        if args.command == "check-config":
            print(_verdict(len(exc.problems), 0), file=sys.stderr)
        return EXIT_USAGE
    except UsageRefused as exc:
        print(f"facturasd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LedgerMissing as exc:
        # Exit 2, as for a refused configuration: systemd does not restart it in a loop.
        print(f"facturasd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (AlreadyRunning, CannotListen, StoreError, ReviewRefused) as exc:
        print(f"facturasd: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:
        # The reader left (`facturasd inspect … | head`): nothing more to say, no traceback.
        # What is still buffered for stdout goes nowhere rather than failing at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
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
    lang = _lang(args, config)
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


def _sandbox(args: argparse.Namespace) -> int:
    from facturasd.sandbox.run import Refused, serve

    try:
        # The Alegra options left out keep serve's defaults.
        alegra = {
            key: value
            for key in ("alegra_user", "alegra_token", "alegra_rate", "alegra_state")
            if (value := getattr(args, key)) is not None
        }
        anyio.run(partial(serve, args.bind, args.documents, args.dian_trust, **alegra))
    except Refused as exc:
        print(f"facturasd sandbox: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _run(config: Config, log_format: str | None, new_ledger: bool, sandbox: bool) -> int:
    from facturasd import logs
    from facturasd.daemon import Daemon
    from facturasd.sandbox.run import Refused

    logs.configure(log_format or config.daemon.log_format, config.daemon.log_level)
    try:
        anyio.run(Daemon(config, new_ledger=new_ledger, sandbox=sandbox).run)
    except Refused as exc:
        print(f"facturasd: cannot start: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"facturasd: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _check_config(config: Config, as_json: bool, online: bool) -> int:
    """The configuration as it will run, its problems (exit 2) and warnings; `online`: with
    Alegra's word on its credentials."""
    from facturasd.doctor import channel_problems, start_up, token_problems

    report = check_folders(config)
    running, problems = start_up(config)
    errors = report.errors + problems
    # The notification channels as the daemon will open them (a secret file's absence is
    # said once, by the folders' look above).
    errors += anyio.run(channel_problems, config, errors)
    errors += token_problems(config)
    if online and config.alegra.enabled:
        from facturasd.alegra.service import refusals

        errors += anyio.run(refusals, config)
    warnings = report.warnings
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
        # The problems first, where one reading from the top sees them; the verdict last,
        # where one reading the end (or `systemctl status`) does.
        for line in errors:
            print(f"error: {line}", file=sys.stderr)
        for line in warnings:
            print(f"warning: {line}", file=sys.stderr)
        if running:
            print(
                f"daemon running (pid {running}): http.bind and the database are its own, "
                "not tried",
                file=sys.stderr,
            )
        for key, value in flatten(data).items():
            print(f"{key} = {json.dumps(value, ensure_ascii=False)}")
        sys.stdout.flush()  # before the verdict, when both streams go to one place
        print(_verdict(len(errors), len(warnings)), file=sys.stderr)
    return EXIT_USAGE if errors else EXIT_OK


def _doctor(config: Config, as_json: bool, online: bool) -> int:
    """Each check of the installation on a line; exit 1 when one is an error."""
    from facturasd.doctor import examine, summary

    checks = anyio.run(partial(examine, config, online=online))
    if as_json:
        print(json.dumps(summary(checks), indent=2, ensure_ascii=False))
    else:
        for check in checks:
            print(f"{check.level:<8} {check.subject}: {check.message}")
    return EXIT_FAILURE if any(check.level == "error" for check in checks) else EXIT_OK


def _verdict(problems: int, warnings: int) -> str:
    """check-config's last line: OK, or how many problems stop the daemon from starting."""
    said = [f"{problems} problem{'s' if problems != 1 else ''}"] if problems else ["OK"]
    if warnings:
        said.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    return ", ".join(said)


def _backup(config: Config, dest: str) -> int:
    from facturasd.progress import shown
    from facturasd.store.db import backup_file

    source = config.paths.state_dir / DATABASE_FILE
    with shown("backup", counted=False) as step:  # (bytes, then the check: nothing to count)
        result = anyio.run(backup_file, source, dest, step)
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

    lang = _lang(args, config)
    words = LISTING_WORDS[lang]
    zone = ZoneInfo(config.daemon.timezone)
    limit = _limit(args)
    state = JobState(args.state) if args.state else None

    async def work() -> tuple[list[Job], int]:
        async with _database(config) as db:
            queue = Queue(db, config.queues)
            if args.retry:
                also = partial(_requeued, reason=args.reason)
                found = [await queue.requeue(job_id, also=also) for job_id in args.retry]
                return found, len(found)
            if args.retry_dead:
                found = await queue.requeue_dead(
                    args.queue, also=partial(_requeued, reason=args.reason)
                )
                return found, len(found)
            found = await queue.find(state=state, queue=args.queue, limit=limit)
            if len(found) != limit:  # all of them
                return found, len(found)
            return found, await queue.count(state=state, queue=args.queue)

    found, matched = anyio.run(work)
    if args.json:
        rows = [
            {
                "id": j.id,
                "queue": j.queue,
                "kind": j.kind,
                "invoice": j.payload.get("invoice"),
                "state": j.state.value,
                "attempts": j.attempts,
                "max_attempts": j.max_attempts,
                "created_at": local(j.created_at, zone),
                "last_error": j.last_error,
            }
            for j in found
        ]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return EXIT_OK
    columns = ("id", "state", "queue", "kind", "invoice", "attempts", "created", "error")
    cells = [
        [
            str(j.id),
            wording.state(j.state.value, lang),
            j.queue,
            j.kind,
            _cell(j.payload.get("invoice")),
            f"{j.attempts}/{j.max_attempts}",
            _minute(j.created_at, zone),
            _cell(j.last_error, 100),
        ]
        for j in found
    ]
    _print_listing(words, "jobs", columns, cells, matched)
    return EXIT_OK


def _invoice_list(config: Config, args: argparse.Namespace) -> int:
    from facturasd.store import ledger

    lang = _lang(args, config)
    words = LISTING_WORDS[lang]
    zone = ZoneInfo(config.daemon.timezone)
    limit = _limit(args)
    matching = _filter(args, config, ())

    async def work() -> tuple[list[ledger.Invoice], int]:
        async with _database(config) as db:
            found = await ledger.search(db, matching, limit=limit)
            if len(found) != limit:  # all of them
                return found, len(found)
            return found, await ledger.count(db, matching)

    found, matched = anyio.run(work)
    if args.json:
        print(json.dumps([invoice_row(i, zone) for i in found], indent=2, ensure_ascii=False))
        return EXIT_OK
    columns = (
        "id", "state", "compliance", "received", "issued", "number", "issuer", "total",
        "currency", "uuid", "file",
    )  # fmt: skip
    cells = [
        [
            str(i.id),
            wording.state(i.state, lang),
            wording.state(i.compliance, lang),
            _minute(i.received_at, zone),
            _cell(i.issued_at and i.issued_at[:10]),  # the day, as the document gives it
            _cell(i.number, 20),
            _cell(i.issuer_name or i.issuer_tax_id, 28),
            _cell(i.total and wording.amount(i.total, i.country)),
            _cell(i.currency),
            # Enough of it to tell one from another here; `invoices show` has it whole.
            _cell(i.uuid, 9),
            _cell(i.original_name, 40),
        ]
        for i in found
    ]
    _print_listing(words, "invoices", columns, cells, matched)
    return EXIT_OK


def _filter(args: argparse.Namespace, config: Config, states: Sequence[str]) -> ledger.Filter:
    """The invoices `_filter_arguments`' flags ask for; with no --state, those in `states`
    (any state when empty). UsageRefused: a company not configured."""
    from facturasd.store import ledger

    if args.company is not None:
        words = LISTING_WORDS[_lang(args, config)]
        known = [c.slug for c in config.companies]
        if not known:
            raise UsageRefused(words["no companies"].format(slug=args.company))
        if args.company not in known:
            raise UsageRefused(
                words["no such company"].format(slug=args.company, known=", ".join(known))
            )
    zone = ZoneInfo(config.daemon.timezone)
    return ledger.Filter(
        states=args.state or states,
        compliance=args.compliance or (),
        since=_start_of(args.since, zone) if args.since else None,
        issued_since=args.issued_since.isoformat() if args.issued_since else None,
        company=args.company,
    )


def _filtered(args: argparse.Namespace) -> bool:
    """Whether any of `_filter_arguments`' flags was given."""
    return any(
        value is not None
        for value in (args.state, args.compliance, args.since, args.issued_since, args.company)
    )


def _limit(args: argparse.Namespace) -> int | None:
    """The rows to read: as told; else all for JSON, a screenful for a table."""
    limit: int | None = args.limit
    return limit if limit is not None or args.json else TABLE_LIMIT


def _print_listing(
    words: dict[str, str],
    what: str,
    columns: Sequence[str],
    cells: list[list[str]],
    matched: int,
) -> None:
    """A table of `what` under a header, and how many more matched; one line if none did."""
    if not cells:
        print(words[f"no {what}"])
        return
    rows = [[words[c] for c in columns], *cells]
    widths = [max(len(row[n]) for row in rows) for n in range(len(columns))]
    for row in rows:
        line = "  ".join(
            text.rjust(width) if column in NUMERIC_COLUMNS else text.ljust(width)
            for column, text, width in zip(columns, row, widths, strict=True)
        )
        print(line.rstrip())
    if matched > len(cells):
        print(words[f"more {what}"].format(more=matched - len(cells), matched=matched))


def _cell(value: object, width: int | None = None) -> str:
    """A value as a table shows it: a dash if there is none; characters a terminal would act
    on (a name is whatever the sender wrote) as escapes; cut to `width` with an ellipsis."""
    if value is None or value == "":
        return "—"
    text = "".join(
        char.encode("unicode_escape").decode("ascii")
        if unicodedata.category(char) in UNPRINTABLE
        else char
        for char in str(value)
    )
    if width is not None and len(text) > width:
        return text[: width - 1] + "…"
    return text


def _lang(args: argparse.Namespace, config: Config) -> Language:
    """The language of what a command prints: --lang, else reports.language."""
    lang: Language = getattr(args, "lang", None) or config.reports.language
    return lang


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


def _retry(config: Config, args: argparse.Namespace) -> int:
    """`retry`: a line per invoice queued to be asked again, and how many; a refusal per
    invoice that cannot be (not checked, being asked right now), the others asked all the
    same."""
    from facturasd.pipeline.review import Review
    from facturasd.services import build

    lang = _lang(args, config)

    async def work() -> tuple[list[str], list[str]]:
        _database_file(config)
        async with build(config, upgrade=False) as services:
            review = Review(
                services.db,
                services.lifecycle,
                config.companies,
                _person(),
                clock=services.clock,
            )
            ids = dict.fromkeys(args.ids) or await review.checked_with(args.status)
            asked, refused = [], []
            for invoice_id in ids:
                try:
                    was, what = await review.ask_again(invoice_id, args.reason)
                except ReviewRefused as exc:
                    refused.append(exc.words(lang))
                    continue
                state = was.state if what == "booking_again" else was.compliance
                asked.append(wording.review(what, lang, invoice=_cell(was.describe()), state=state))
            return asked, refused

    asked, refused = anyio.run(work)
    for line in asked:
        print(line)
    sys.stdout.flush()  # before the refusals, when both streams go to one place
    for line in refused:
        print(f"facturasd: {line}", file=sys.stderr)
    print(wording.review("asked_count", lang, count=len(asked)))
    return EXIT_FAILURE if refused else EXIT_OK


def _reprocess(config: Config, args: argparse.Namespace) -> int:
    """`reprocess`: the invoices given, or with --all those a rules change can alter (of
    the filters), queued to be read and checked again, and which (how many, when many); a
    refusal per invoice that cannot be (being read), the others queued all the same."""
    from facturasd.pipeline.review import Review
    from facturasd.progress import shown
    from facturasd.services import build
    from facturasd.store import ledger

    lang = _lang(args, config)
    matching = _filter(args, config, REPROCESSED) if args.all else None

    async def work(step: Step | None) -> tuple[list[int], list[str]]:
        _database_file(config)
        async with build(config, upgrade=False) as services:
            review = Review(services.db, services.lifecycle, config.companies, _person())
            if matching is None:
                ids = list(dict.fromkeys(args.ids))
            else:  # oldest first, the order they came in
                ids = [i.id for i in reversed(await ledger.search(services.db, matching))]
            queued, refused = [], []
            for done, invoice_id in enumerate(ids):
                if step is not None:
                    step(done, len(ids))
                try:
                    await review.reprocess(invoice_id, args.reason)
                except ReviewRefused as exc:
                    refused.append(exc.words(lang))
                    continue
                queued.append(invoice_id)
            if step is not None:
                step(len(ids), len(ids))
            return queued, refused

    with shown(wording.PROGRESS[lang]["reprocess"], long=args.all) as step:
        queued, refused = anyio.run(work, step)
    for line in refused:
        print(f"facturasd: {line}", file=sys.stderr)
    if 0 < len(queued) <= NAMED:
        print(wording.review("queued_again", lang, ids=", ".join(f"#{i}" for i in queued)))
    else:
        print(wording.review("queued_again_count", lang, count=len(queued)))
    return EXIT_FAILURE if refused else EXIT_OK


def _invoices(config: Config, args: argparse.Namespace) -> int:
    from facturasd.pipeline.review import Review
    from facturasd.services import build

    zone = ZoneInfo(config.daemon.timezone)
    lang = _lang(args, config)
    action = args.action

    async def work() -> object:
        _database_file(config)
        async with build(config, upgrade=False) as services:
            db = services.db
            review = Review(db, services.lifecycle, config.companies, _person())
            if action in ("assign", "accept", "discard"):
                company = getattr(args, "company", "")
                done = await review.act(action, args.id, args.reason, company=company)
                return done.words(lang)
            if action == "bill":
                await review.settle_bill(args.id, args.alegra_bill, args.reason)
                if args.alegra_bill:
                    return wording.review("bill_linked", lang, id=args.id, bill=args.alegra_bill)
                return wording.review(
                    "booking_again", lang, invoice=f"#{args.id}", state="needs_review"
                )
            if action == "show":
                detail = await invoice_detail(db, args.id, zone, lang)
                if detail is None:
                    raise ReviewRefused("no_invoice", id=args.id)
                return detail
            raise AssertionError(f"no such action: {action}")  # argparse allows no other

    try:
        result = anyio.run(work)
    except ReviewRefused as exc:  # said in the language of the rest
        print(f"facturasd: {exc.words(lang)}", file=sys.stderr)
        return EXIT_FAILURE
    if isinstance(result, str):
        print(result)
    elif getattr(args, "json", False):
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        assert isinstance(result, dict)
        print(_show(result, lang))
    return EXIT_OK


def _minute(timestamp: float, zone: ZoneInfo) -> str:
    """A time as a table shows it: to the minute, in the daemon's zone."""
    return datetime.fromtimestamp(timestamp, zone).strftime("%Y-%m-%d %H:%M")


def _start_of(day: date, zone: ZoneInfo) -> float:
    return datetime.combine(day, datetime.min.time(), zone).timestamp()


def _show(found: dict[str, Any], lang: Language) -> str:
    """`invoices show` as a person reads it, wholly in `lang`, but for the history's reasons:
    recorded as sentences, they are shown as they were written, and labelled so."""
    words = wording.WORDS[lang]
    kind = wording.KINDS[lang].get(found["kind"], found["kind"]) if found["kind"] else ""
    total = wording.amount(found["total"], found["country"]) if found["total"] else "—"
    lines = [
        f"#{found['id']} {wording.state(found['state'], lang)} "
        f"({wording.state(found['compliance'], lang)})  {found['original_name']}",
        f"  {words['file']}: {found['path']}",
        f"  {words['received']} {found['received_at']} {words['as']} {found['inbox_path']}",
        f"  {found['format'] or '—'} {kind} {found['number'] or ''} "
        f"UUID/CUFE {found['uuid'] or '—'} {words['total']} {total} {found['currency'] or ''}",
        f"  {words['issuer']} {found['issuer_tax_id'] or '—'} {found['issuer_name'] or ''}; "
        f"{words['receiver']} {found['receiver_tax_id'] or '—'}; "
        f"{words['company']} {found['company'] or '—'}",
    ]
    inspection = found.get("inspection") or {}
    # A value read from a PDF's text alone, beside the text it came from, for a person to check
    # (as the sender printed it: escaped where a terminal would act on it).
    read_from = (inspection.get("document") or {}).get("read_from") or {}
    if read_from:
        lines.append(f"  {words['read_from']}:")
        lines += [f"    {name}: «{_cell(text)}»" for name, text in read_from.items()]
    lines += [
        f"  [{wording.SEVERITIES[lang][f['severity']]}] {f['code']}: {f['message']}"
        f"{located(f['path'])}"
        for f in inspection.get("findings", [])
    ]
    lines.append(f"  {words['history']}:")
    lines += [
        f"    {e['at']} {_changed(e, lang):<12} {e['actor']}: {e['reason']}"
        for e in found["history"]
    ]
    if found.get("alegra_bill_id"):
        lines.append(f"  {words['bill']}: {found['alegra_bill_id']}")
    if found["attempts"]:
        lines.append(f"  {words['attempts']}:")
        lines += [_attempt_line(a, lang) for a in found["attempts"]]
    if found["alerts"]:
        lines.append(f"  {words['alerts']}:")
        # (An alert names its invoice for where it is read alone; here, that is this one.)
        lines += [
            f"    {a['at']} [{wording.SEVERITIES[lang][a['severity']]}] {a['code']}: "
            + "; ".join(
                f"{k}: {_cell(v)}" for k, v in sorted(a["params"].items()) if k != "invoice"
            )
            for a in found["alerts"]
        ]
    return "\n".join(line.rstrip() for line in lines)


def _attempt_line(attempt: dict[str, Any], lang: Language) -> str:
    """One attempt to get the tax authority's word: when, whom, from where, what came of it,
    in what time, and the URL asked."""
    source = wording.SOURCES[lang].get(attempt["source"], attempt["source"])
    outcome = wording.OUTCOMES[lang].get(attempt["outcome"], attempt["outcome"])
    line = f"    {attempt['at']} {attempt['authority'].upper()} {source}: {outcome}"
    if attempt["status"]:
        line += f" {_cell(attempt['status'])}"
    if attempt["detail"]:
        line += f" ({_cell(attempt['detail'])})"
    if attempt["latency_ms"] is not None:
        line += f", {wording.count(attempt['latency_ms'], lang)} ms"
    if attempt["endpoint"] and attempt["source"] == "online":
        line += f" {attempt['endpoint']}"
    return line


def _changed(event: dict[str, Any], lang: Language) -> str:
    """What an event of the history changed: the state, or the status with the tax authority."""
    if event["state"]:
        return wording.state(event["state"], lang)
    if event["compliance"]:
        return f"{wording.WORDS[lang]['authority']}: {wording.state(event['compliance'], lang)}"
    return ""


# ── alerts ────────────────────────────────────────────────────────────────────────────────

ALERTS_HELP = "the alerts raised, newest first: events about invoices, and conditions"
ALERT_WORDS: dict[Language, dict[str, str]] = {
    "es": {
        "id": "ID",
        "at": "FECHA",
        "code": "CÓDIGO",
        "alert": "ALERTA",
        "no alerts": "No hay alertas que mostrar.",
        "more alerts": "… y {more} más antiguas: --limit {matched} las muestra todas.",
    },
    "en": {
        "id": "ID",
        "at": "AT",
        "code": "CODE",
        "alert": "ALERT",
        "no alerts": "No alerts to show.",
        "more alerts": "… and {more} older: --limit {matched} shows them all.",
    },
}


def _alerts_parser(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--open",
        action="store_true",
        help="only the conditions that still hold (their last alert) and the last day's events",
    )
    sub.add_argument("--limit", type=_positive, metavar="N", help=LIMIT_HELP)
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub.add_argument("--lang", choices=LANGUAGES, help=LANG_HELP)


def _alerts(config: Config, args: argparse.Namespace) -> int:
    from facturasd.monitoring.alert_words import describe
    from facturasd.monitoring.alerts import listed
    from facturasd.store.compliance import Alert

    lang = _lang(args, config)
    zone = ZoneInfo(config.daemon.timezone)
    limit = _limit(args)

    async def work() -> list[Alert]:
        async with _database(config) as db:
            return await listed(db, open_only=args.open, now=datetime.now().timestamp())

    found = anyio.run(work)
    shown = found[:limit]
    if args.json:
        rows = [alert_row(a, zone, lang) for a in shown]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return EXIT_OK
    cells = [
        [str(a.id), _minute(a.at, zone), a.code, _cell(describe(a, lang).subject, 100)]
        for a in shown
    ]
    _print_listing(ALERT_WORDS[lang], "alerts", ("id", "at", "code", "alert"), cells, len(found))
    return EXIT_OK


# ── audit ─────────────────────────────────────────────────────────────────────────────────

AUDIT_HELP = "the actions people and systems took through the CLI and the HTTP API, newest first"
AUDIT_WORDS: dict[Language, dict[str, str]] = {
    "es": {
        "id": "ID",
        "at": "FECHA",
        "actor": "QUIÉN",
        "via": "VÍA",
        "action": "ACCIÓN",
        "target": "SOBRE",
        "reason": "MOTIVO",
        "no entries": "No hay acciones que mostrar.",
        "more entries": "… y {more} más antiguas: --limit {matched} las muestra todas.",
    },
    "en": {
        "id": "ID",
        "at": "AT",
        "actor": "WHO",
        "via": "VIA",
        "action": "ACTION",
        "target": "ON",
        "reason": "REASON",
        "no entries": "No actions to show.",
        "more entries": "… and {more} older: --limit {matched} shows them all.",
    },
}


def _audit_parser(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--since", type=_day, metavar="DAY", help=f"taken on or after DAY: {DAY_EXAMPLES}"
    )
    sub.add_argument("--limit", type=_positive, metavar="N", help=LIMIT_HELP)
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub.add_argument("--lang", choices=LANGUAGES, help=LANG_HELP)


def _audit(config: Config, args: argparse.Namespace) -> int:
    from facturasd.store.audit import Entry, entries

    lang = _lang(args, config)
    zone = ZoneInfo(config.daemon.timezone)
    since = _start_of(args.since, zone) if args.since else None

    async def work() -> list[Entry]:
        async with _database(config) as db:
            return await entries(db, since=since)

    found = anyio.run(work)
    shown = found[: _limit(args)]
    if args.json:
        rows = [{**asdict(e), "at": local(e.at, zone)} for e in shown]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return EXIT_OK
    columns = ("id", "at", "actor", "via", "action", "target", "reason")
    cells = [
        [
            str(e.id),
            _minute(e.at, zone),
            _cell(e.actor, 30),
            e.via,
            e.action,
            e.target,
            _cell(e.reason, 80),
        ]
        for e in shown
    ]
    _print_listing(AUDIT_WORDS[lang], "entries", columns, cells, len(found))
    return EXIT_OK


def _requeued(conn: sqlite3.Connection, job: Job, *, reason: str) -> None:
    """`jobs --retry`'s row in the audit trail, in the transaction that revives the job."""
    from facturasd.store import audit

    audit.record(
        conn,
        audit.Who(_person(), "cli"),
        at=datetime.now().timestamp(),
        action="requeue",
        target=f"job/{job.id}",
        reason=reason,
        queue=job.queue,
        kind=job.kind,
        invoice=job.payload.get("invoice"),
    )


def _person() -> str:
    """Who acts from the command line, for the invoice's history and the audit trail: the
    account the command runs as (its user id's, not $USER, which anyone sets) and, under sudo,
    the person who ran it ("ana (as facturasd)")."""
    try:
        account = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a user id with no name (a container's)
        account = str(os.getuid())
    person = os.environ.get("SUDO_USER")
    return f"{person} (as {account})" if person and person != account else account


def _month(text: str) -> str:
    """`--month`: a month written YYYY-MM."""
    try:
        return datetime.strptime(text, "%Y-%m").strftime("%Y-%m")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a month: write it 2026-11") from None


def _report(config: Config, args: argparse.Namespace) -> int:
    """`report`: the files written. The cache's figures and the recommendations are the
    running daemon's, asked at its /health; without one the report says they are not
    available."""
    from facturasd.monitoring.alert_words import describe
    from facturasd.monitoring.recommend import worded
    from facturasd.monitoring.snapshot import cache_metrics
    from facturasd.progress import shown
    from facturasd.reports import Written, write_daily, write_monthly

    zone = ZoneInfo(config.daemon.timezone)
    lang = _lang(args, config)
    today = datetime.now(zone).date()
    if args.last is not None and args.first is None:
        raise UsageRefused("report: --to goes with --from")
    day = args.date or args.first or today
    last = (args.last or today) if args.first else None
    if last is not None and last < day:
        raise UsageRefused(f"report: --to {last} is before --from {day}")

    async def work(step: Step | None) -> Written:
        async with _database(config) as db:
            if args.month:
                return await write_monthly(db, config, month=args.month, lang=lang, step=step)
            health = await _daemon_health(config)
            checks = health["checks"] if health else None
            threshold = config.alerts.cache_hit_rate_min
            return await write_daily(
                db,
                config,
                zone=zone,
                day=day,
                last=last,
                lang=lang,
                describe=describe,
                recommend=None if checks is None else worded(checks, threshold),
                cache_metrics=cache_metrics(health),
                step=step,
            )

    # (the long ones: a month's documents, a range of days)
    long = bool(args.month or args.first)
    with shown(wording.PROGRESS[lang]["report"], counted=False, long=long) as step:
        written = anyio.run(work, step)
    if args.json:
        print(json.dumps({k: str(v) for k, v in asdict(written).items()}, indent=2))
    else:
        for path in (written.md, written.json, written.csv):
            print(path)
    return EXIT_OK


async def _daemon_health(config: Config) -> dict[str, Any] | None:
    """The running daemon's /health report, or None: no daemon runs on this state
    directory, or it did not answer in time."""
    import httpx

    from facturasd.daemon import running_pid

    if running_pid(config.paths.state_dir) is None:
        return None
    try:
        async with httpx.AsyncClient(timeout=5.0) as http:
            response = await http.get(f"http://{config.http.bind}/health")
        found: dict[str, Any] = response.json()  # 503 too: the report is in the body
    except (httpx.HTTPError, ValueError):
        return None
    return found


# ── status and monitor ────────────────────────────────────────────────────────────────────

STATUS_HELP = (
    "one screen: health, queues, the invoices received today, what needs a person, the "
    "Alegra cache, the last report and the alerts open"
)
MONITOR_HELP = "the figures of status, for a terminal left open or for scripts"
# Seconds between two screens of `monitor --watch` and `--dashboard`, unless told.
INTERVAL = 5
# Cursor home; clear to the end of the line; clear to the end of the screen. Each line is
# written over the last screen's, so a redraw does not blink.
HOME, CLEAR_LINE, CLEAR_REST = "\x1b[H", "\x1b[K", "\x1b[J"


def _status_parsers(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    status = command("status", STATUS_HELP)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--lang", choices=LANGUAGES, help=LANG_HELP)
    monitor = command("monitor", MONITOR_HELP)
    view = monitor.add_mutually_exclusive_group(required=True)
    for flag, what in (
        ("dashboard", "a full-terminal view, refreshed until Ctrl-C"),
        ("watch", "the status screen, redrawn in place until Ctrl-C"),
        ("json", "one JSON object: the figures of status --json"),
    ):
        view.add_argument(f"--{flag}", action="store_const", const=flag, dest="view", help=what)
    monitor.add_argument(
        "--interval",
        type=_positive,
        default=INTERVAL,
        metavar="S",
        help="seconds between refreshes (default: %(default)s)",
    )
    monitor.add_argument("--lang", choices=LANGUAGES, help=LANG_HELP)


def _status(config: Config, args: argparse.Namespace) -> int:
    """`status`, `monitor`: the snapshot once (a screen or JSON), or again and again until
    Ctrl-C."""
    from facturasd.monitoring.snapshot import screen

    lang = _lang(args, config)
    view = args.view if args.command == "monitor" else "json" if args.json else "screen"
    if view in ("watch", "dashboard"):
        with suppress(KeyboardInterrupt):  # how a person leaves it
            anyio.run(_monitor, config, lang, view, args.interval)
        return EXIT_OK

    async def once() -> dict[str, Any]:
        async with _database(config) as db:
            return await _snapshot(db, config, lang)

    snap = anyio.run(once)
    if view == "json":
        print(json.dumps(snap, indent=2, ensure_ascii=False))
    else:
        print(screen(snap, lang))
    return EXIT_OK


async def _snapshot(db: Database, config: Config, lang: Language) -> dict[str, Any]:
    """The snapshot now, with the running daemon's health when one answers."""
    from facturasd.clock import utcnow
    from facturasd.monitoring.snapshot import snapshot

    return await snapshot(
        db,
        config,
        zone=ZoneInfo(config.daemon.timezone),
        clock=utcnow,
        health=await _daemon_health(config),
        lang=lang,
    )


async def _monitor(config: Config, lang: Language, view: str, interval: int) -> None:
    """The snapshot drawn every `interval` seconds, until cancelled."""
    from rich.live import Live

    from facturasd.monitoring.snapshot import dashboard, screen

    async with _database(config) as db:
        if view == "watch":
            while True:
                text = screen(await _snapshot(db, config, lang), lang)
                end = "\n\n"  # to a file or a pipe: one screen after another
                if sys.stdout.isatty():
                    lines = text.splitlines()
                    text = HOME + "\n".join(f"{line}{CLEAR_LINE}" for line in lines) + CLEAR_REST
                    end = ""  # (a last line break would scroll a full screen)
                print(text, end=end, flush=True)
                await anyio.sleep(interval)
        # (the terminal's alternate screen: what was on it is back when the view ends)
        with Live(screen=True, auto_refresh=False) as live:
            while True:
                live.update(dashboard(await _snapshot(db, config, lang), lang), refresh=True)
                await anyio.sleep(interval)
