"""From the ledger's alerts to the channels: each delivery a durable job.

`dispatch` takes the alerts not handed out yet (`sent_at` NULL), oldest first, and in one
commit queues a `notify` job on `notifications` for every channel that wants the alert's
severity and marks the alerts handed out: an alert is never lost (the job outlives a restart)
and never handed out twice (a second dispatch no longer sees it; the dedupe key
`notify:<alert>:<channel>` guards the rest). The `reports` pool runs the jobs: a channel that
gives no answer has its job handed back uncounted, one that refuses has it retried with
backoff and dead after its attempts, and neither holds up the pipeline or another channel.
The daily report is mailed the same way (`queue_report`, job kind `notify-report`).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import anyio
import markdown

from facturasd.clock import Clock, utcnow
from facturasd.constants import JobState, QueueName
from facturasd.errors import JobFailed
from facturasd.monitoring.health import Item, ProbeFn, Status
from facturasd.notify.channels import Attachment, Channel, Message, accepts
from facturasd.store import compliance
from facturasd.store.compliance import Alert
from facturasd.store.db import Database
from facturasd.store.queue import Effect, Job, Queue
from facturasd.wording import Language

log = logging.getLogger(__name__)

NOTIFY = "notify"
NOTIFY_REPORT = "notify-report"
QUEUE = QueueName.NOTIFICATIONS
BATCH = 100  # alerts handed out per transaction
DISPATCH_EVERY = 2.0  # seconds between looks when nobody calls wake()
REPORT_CHANNEL = "email"
# The report's Markdown as HTML: its tables are GitHub-style pipe tables.
MARKDOWN_EXTENSIONS = ["tables"]


class Worded(Protocol):
    """What `describe` gives: a subject line and a short text (monitoring/alert_words.Said)."""

    @property
    def subject(self) -> str: ...

    @property
    def text(self) -> str: ...


Describe = Callable[[Alert, Language], Worded]


class Outbox:
    def __init__(
        self,
        db: Database,
        queue: Queue,
        channels: Sequence[Channel],
        *,
        describe: Describe,
        lang: Language,
        clock: Clock = utcnow,
        batch: int = BATCH,
        every: float = DISPATCH_EVERY,
    ):
        self.db = db
        self.queue = queue
        self.channels = {channel.name: channel for channel in channels}
        self.describe = describe
        self.lang = lang
        self.batch = batch
        self.every = every
        self._clock = clock
        self._wake = anyio.Event()
        # Each channel's last delivery, if it failed: its error's first line (no secret).
        self.failing: dict[str, str] = {}

    # ── handing alerts out ────────────────────────────────────────────────────────────────

    async def dispatch(self) -> int:
        """Hands out up to `batch` alerts not handed out yet, oldest first; returns how
        many."""

        def hand_out(conn: sqlite3.Connection) -> int:
            rows = conn.execute(
                "SELECT id, severity FROM alerts WHERE sent_at IS NULL ORDER BY id LIMIT ?",
                (self.batch,),
            ).fetchall()
            for row in rows:
                for channel in self.channels.values():
                    if accepts(channel, row["severity"]):
                        self.queue.add(
                            conn,
                            queue=QUEUE,
                            kind=NOTIFY,
                            payload={"channel": channel.name, "alert": row["id"]},
                            dedupe_key=f"notify:{row['id']}:{channel.name}",
                        )
            conn.executemany(
                "UPDATE alerts SET sent_at = ? WHERE id = ?",
                [(self._clock().timestamp(), row["id"]) for row in rows],
            )
            return len(rows)

        return await self.db.write(hand_out)

    def wake(self) -> None:
        """New alerts are in the ledger: dispatch now rather than at the next look."""
        self._wake.set()

    async def run(self) -> None:
        """The supervised loop: dispatch, then wait `every` seconds or until `wake()`."""
        while True:
            self._wake = anyio.Event()
            while await self.dispatch() == self.batch:
                pass  # more are waiting
            with anyio.move_on_after(self.every):
                await self._wake.wait()

    def queue_report(
        self, conn: sqlite3.Connection, *, md: Path, csv: Path, subject: str
    ) -> Job | None:
        """Inside the caller's transaction: the report at `md` mailed as HTML with `csv`
        attached, by the e-mail channel. None when e-mail is not enabled."""
        if REPORT_CHANNEL not in self.channels:
            return None
        return self.queue.add(
            conn,
            queue=QUEUE,
            kind=NOTIFY_REPORT,
            payload={"channel": REPORT_CHANNEL, "md": str(md), "csv": str(csv), "subject": subject},
            dedupe_key=f"notify-report:{md.name}",
        )

    # ── delivering ────────────────────────────────────────────────────────────────────────

    async def __call__(self, job: Job) -> Effect | None:
        """The handler of `notify` and `notify-report` jobs."""
        name = job.payload["channel"]
        channel = self.channels.get(name)
        if channel is None:
            log.info("notify: channel %s is no longer enabled; job %d dropped", name, job.id)
            return None
        if job.kind == NOTIFY_REPORT:
            message = await self._report(job)
        else:
            message = await self._alert(job.payload["alert"])
        try:
            await channel.send(message)
        except Exception as exc:
            self.failing[name] = _first_line(exc)
            raise
        self.failing.pop(name, None)
        log.info("notify: %s delivered by %s", message.id, name)
        return None

    async def _alert(self, alert_id: int) -> Message:
        alert = await compliance.alert(self.db, alert_id)
        if alert is None:
            raise JobFailed(f"alert {alert_id} is not in the ledger")
        said = self.describe(alert, self.lang)
        return Message(
            id=f"alert-{alert.id}",
            subject=said.subject,
            text=said.text,
            severity="critical" if alert.severity == "critical" else "warning",
            # The webhook's body, with subject, text and severity: Standard Webhooks' `type`
            # and `timestamp`, and the alert as data.
            data={
                "type": f"alert.{alert.status}",
                "timestamp": datetime.fromtimestamp(alert.at, UTC).isoformat(),
                "alert": {
                    "id": alert.id,
                    "code": alert.code,
                    "severity": alert.severity,
                    "status": alert.status,
                    "condition": alert.condition,
                    "invoice_id": alert.invoice_id,
                    "params": alert.params,
                },
            },
        )

    async def _report(self, job: Job) -> Message:
        md, csv = Path(job.payload["md"]), Path(job.payload["csv"])
        try:
            text = await anyio.Path(md).read_text(encoding="utf-8")
            table = await anyio.Path(csv).read_bytes()
        except OSError as exc:
            raise JobFailed(f"the report to mail cannot be read: {exc}") from None
        html = await anyio.to_thread.run_sync(
            lambda: markdown.markdown(text, extensions=MARKDOWN_EXTENSIONS)
        )
        return Message(
            id=f"report-{job.id}",
            subject=job.payload["subject"],
            text=text,
            severity="info",
            html=html,
            attachments=(Attachment(csv.name, table, "text/csv"),),
        )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).splitlines()
    return lines[0] if lines else type(exc).__name__


def probe(outbox: Outbox, channel: str) -> ProbeFn:
    """`notify:<channel>`: warn while the channel's last delivery failed or it has dead jobs
    (deliveries that used up their attempts), with the last error's first line."""

    async def run(now: str) -> list[Item]:
        row = await outbox.db.fetchone(
            "SELECT COUNT(*) AS dead, MAX(id) AS last FROM jobs "
            "WHERE queue = ? AND state = ? AND json_extract(payload, '$.channel') = ?",
            (QUEUE, JobState.DEAD, channel),
        )
        dead = int(row["dead"]) if row else 0
        output = outbox.failing.get(channel)
        if output is None and dead:
            last = await outbox.queue.get(row["last"]) if row else None
            output = (last.last_error or "").partition("\n")[0] if last else None
        status: Status = "warn" if output is not None or dead else "pass"
        item: Item = {
            "componentId": channel,
            "componentType": "component",
            "status": status,
            "observedValue": dead,
            "observedUnit": "dead deliveries",
            "time": now,
        }
        if output:
            item["output"] = output
        return [item]

    return run
