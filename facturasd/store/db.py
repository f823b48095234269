"""The SQLite connection: pragmas, migrations, group commit and online backups.

Every write goes through `Database.write(op)`, `op` a plain function of the `sqlite3`
connection. Writes that arrive while a commit is being fsync'd wait and are then committed
together in one transaction, so one fsync pays for a whole batch (group commit); one failing
operation does not undo the others. A whole batch runs in one trip to the writer's thread:
under load each trip through the event loop costs about 1.7 ms, so one per statement (as
aiosqlite's own API goes) made the writer the daemon's bottleneck. Reads use a second
connection, also one trip per read (`Database.read(op)`); WAL lets them run beside the writer.

SQLite's own failures leave the store as its typed errors (`StoreBusy`, `StoreDamaged`,
`StoreFull`, … in facturasd/errors.py); an operation's own errors reach its caller unchanged.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import aiosqlite
import anyio

from facturasd.errors import (
    SchemaTooNew,
    StoreBusy,
    StoreDamaged,
    StoreDiskError,
    StoreError,
    StoreFull,
    StoreUnavailable,
)
from facturasd.store.migrations import MIGRATIONS

if TYPE_CHECKING:
    from facturasd.progress import Step

log = logging.getLogger(__name__)

T = TypeVar("T")
# An operation: plain code on the connection, run on the connection's thread. It cannot wait
# on anything but SQLite, so it never holds up the writers behind it. It changes nothing but
# the database: a write runs again if its batch failed (`Database._commit`), so whatever it
# changed in memory would change twice, and for a transaction that did not commit.
Op = Callable[[sqlite3.Connection], T]

BUSY_TIMEOUT_MS = 5000
# A backup's check (quick_check) reads the copy about this many times faster than VACUUM INTO
# writes it (measured on a 270 MB file): its share of the backup's progress.
CHECK_SPEED = 4
# Seconds between two looks at the size of a backup being written.
WATCH_COPY_EVERY = 0.1

# SQLite's primary result codes that say the store, not the operation, failed.
_UNAVAILABLE: dict[int, type[StoreUnavailable]] = {
    sqlite3.SQLITE_BUSY: StoreBusy,
    sqlite3.SQLITE_LOCKED: StoreBusy,
    sqlite3.SQLITE_CORRUPT: StoreDamaged,
    sqlite3.SQLITE_NOTADB: StoreDamaged,
    sqlite3.SQLITE_IOERR: StoreDiskError,
    sqlite3.SQLITE_FULL: StoreFull,
    sqlite3.SQLITE_CANTOPEN: StoreUnavailable,
    sqlite3.SQLITE_READONLY: StoreUnavailable,
    sqlite3.SQLITE_PERM: StoreUnavailable,
}


def _kind(exc: sqlite3.Error) -> type[StoreUnavailable] | None:
    """The store's error for `exc` if it is SQLite's own failure; None for the operation's (a
    constraint it broke, a mistake in its SQL)."""
    # Errors the sqlite3 module raises itself (a closed connection) carry no code.
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else _UNAVAILABLE.get(code & 0xFF)


def _unavailable(exc: BaseException) -> StoreUnavailable | None:
    """`exc`, raised by an operation or around it, as the store's error if SQLite itself
    failed; None for any other, which reaches the caller unchanged."""
    if isinstance(exc, sqlite3.Error) and (kind := _kind(exc)):
        error = kind(_described(exc))
        error.__cause__ = exc
        return error
    return None


def _described(exc: sqlite3.Error) -> str:
    name = getattr(exc, "sqlite_errorname", None)
    return f"{exc} ({name})" if name else str(exc)


def _store_error(exc: sqlite3.Error, doing: str) -> StoreError:
    """`exc` as the store's error, typed if SQLite itself failed."""
    return (_kind(exc) or StoreError)(f"{doing}: {_described(exc)}")


async def _pragma(conn: aiosqlite.Connection, statement: str) -> object:
    """Runs a PRAGMA and closes its cursor (an open one would block VACUUM INTO)."""
    async with conn.execute(f"PRAGMA {statement}") as cursor:
        row = await cursor.fetchone()
    return row[0] if row else None


async def _connect(path: Path) -> aiosqlite.Connection:
    try:
        conn = await aiosqlite.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise _store_error(exc, f"{path}: cannot open the database") from exc
    try:
        conn.row_factory = aiosqlite.Row
        await _pragma(conn, f"busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = await _pragma(conn, "journal_mode = WAL")
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: SQLite refused WAL mode (got {mode!r})")
        # FULL: a commit is on disk (WAL fsync'd) before write() returns, so a committed
        # ledger row survives power loss; group commit keeps that affordable.
        await _pragma(conn, "synchronous = FULL")
        await _pragma(conn, "foreign_keys = ON")
    except BaseException as exc:
        # An unclosed connection's thread would keep the process alive after the error.
        await conn.close()
        if isinstance(exc, sqlite3.Error):
            raise _store_error(exc, f"{path}: cannot use the database") from exc
        raise
    return conn


def _set_aside_orphans(path: Path, backup_dir: Path) -> None:
    """The -wal and -shm files of a database deleted under them (or emptied) would be read
    into the new database created in its place, and damage it: moved to `backup_dir`, never
    deleted. Blocking."""
    try:
        if path.stat().st_size > 0:
            return
    except FileNotFoundError:
        pass
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for suffix in ("-wal", "-shm"):
        orphan = path.with_name(path.name + suffix)
        if orphan.exists():
            backup_dir.mkdir(parents=True, exist_ok=True)
            dest = backup_dir / f"{orphan.name}-without-its-database-{stamp}"
            os.rename(orphan, dest)
            log.warning("%s had no database beside it: moved to %s", orphan, dest)


async def _writable(conn: aiosqlite.Connection, path: Path) -> None:
    """SQLite opens a file it cannot write read-only and says so only at the first write: a
    write that changes nothing finds out now, with the file's name and the fix."""
    try:
        await conn.execute("DELETE FROM schema_version WHERE 0")
    except sqlite3.Error as exc:
        if _kind(exc) is not StoreUnavailable:
            raise
        raise StoreUnavailable(
            f"{path}: cannot write the database ({_described(exc)}): give the user the daemon "
            "runs as write permission on it, its -wal and -shm files and its folder"
        ) from exc


async def schema_version(conn: aiosqlite.Connection) -> int:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version "
        "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    async with conn.execute("SELECT MAX(version) FROM schema_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


async def migrate(
    conn: aiosqlite.Connection,
    path: Path,
    backup_dir: Path,
    migrations: Sequence[str] = MIGRATIONS,
) -> int:
    """Brings the schema to the latest version; returns the version found before."""
    found = await schema_version(conn)
    target = len(migrations)
    if found > target:
        raise SchemaTooNew(
            f"{path}: schema version {found} was written by a newer facturasd "
            f"(this one knows up to {target}); upgrade facturasd or restore a backup"
        )
    if found == target:
        return found
    if found > 0:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        copy = backup_dir / f"{path.stem}-v{found}-before-v{target}-{stamp}.db"
        await anyio.Path(backup_dir).mkdir(parents=True, exist_ok=True)
        await anyio.to_thread.run_sync(_reserve, copy)
        await backup_connection(conn, copy)
        log.info("backed up the database to %s before migrating to v%d", copy, target)
    for version in range(found + 1, target + 1):
        script = migrations[version - 1]
        try:
            await conn.executescript(
                f"BEGIN IMMEDIATE;\n{script}\n;"
                f"INSERT INTO schema_version VALUES ({version}, datetime('now'));\nCOMMIT;"
            )
        except sqlite3.Error as exc:
            if conn.in_transaction:
                await conn.rollback()
            raise _store_error(exc, f"{path}: migration to v{version} failed") from exc
        log.info("database migrated to schema v%d", version)
    return found


async def backup_connection(conn: aiosqlite.Connection, dest: Path) -> None:
    """A consistent copy of the open database, written to `dest`, which the caller created
    empty (`_reserve`: the name is its own, no other copy lands there meanwhile)."""
    tmp = _temporary(dest)
    await anyio.Path(tmp).unlink(missing_ok=True)
    try:
        # VACUUM INTO reads one snapshot, so concurrent writers neither block nor tear it.
        await conn.execute("VACUUM INTO ?", (str(tmp),))
        await anyio.to_thread.run_sync(_fsync_and_rename, tmp, dest)
    finally:
        await anyio.Path(tmp).unlink(missing_ok=True)


def _temporary(dest: Path) -> Path:
    """Where VACUUM INTO writes the copy that is then renamed `dest`."""
    return dest.with_name(f".{dest.name}.{os.getpid()}.tmp")


def _reserve(dest: Path) -> None:
    """`dest` created empty, or FileExistsError: a backup never replaces a file."""
    dest.open("xb").close()


def _fsync_and_rename(tmp: Path, dest: Path) -> None:
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, dest)
    directory = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@dataclass
class _Pending(Generic[T]):
    op: Op[T]
    done: anyio.Event = field(default_factory=anyio.Event)
    result: T | None = None
    error: BaseException | None = None
    # What the operation asked to run once its transaction committed (`after_commit`).
    after: list[Callable[[], None]] = field(default_factory=list)


# The operation running on this thread (a writer's), for `after_commit`.
_running = threading.local()


def after_commit(callback: Callable[[], None]) -> None:
    """From inside an operation given to `Database.write`: run `callback` on the event loop
    once the operation's transaction committed, and never if it rolled back (an operation of
    a failed batch runs again: its callbacks are those of the run that committed). For the
    side effects of a write: a log line, a notification."""
    entry: _Pending[Any] | None = getattr(_running, "entry", None)
    if entry is None:
        raise RuntimeError("after_commit is called from an operation given to Database.write")
    entry.after.append(callback)


@dataclass
class WriteStats:
    """Counters for benchmarks and metrics: how well writes are being grouped."""

    commits: int = 0
    operations: int = 0


class Database:
    """One SQLite file: a writer connection with group commit and a reader connection."""

    def __init__(
        self,
        path: Path,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        identity: tuple[int, int],
    ):
        self.path = path
        self._writer = writer
        self._reader = reader
        # The file opened (device, inode): the one at `path` should stay it (`file_lost`).
        self._identity = identity
        self._lost: str | None = None
        self._pending: list[_Pending[Any]] = []
        self._flush_lock = anyio.Lock()
        self.stats = WriteStats()

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        backup_dir: Path | None = None,
        migrations: Sequence[str] = MIGRATIONS,
        upgrade: bool = True,
    ) -> Database:
        """Opens `path`; only the daemon (upgrade=True) creates or migrates the schema, so a
        command run beside an older daemon never changes the schema under it."""
        await anyio.Path(path.parent).mkdir(parents=True, exist_ok=True)
        backup_dir = backup_dir or path.parent / "backups"
        if upgrade:
            await anyio.to_thread.run_sync(_set_aside_orphans, path, backup_dir)
        writer = await _connect(path)
        try:
            if upgrade:
                await migrate(writer, path, backup_dir, migrations)
                await _writable(writer, path)
            elif (found := await schema_version(writer)) != len(migrations):
                raise StoreError(
                    f"{path}: schema v{found}, this facturasd expects v{len(migrations)}; "
                    "start the daemon once to migrate it"
                )
            reader = await _connect(path)
            stat = await anyio.Path(path).stat()
        except BaseException as exc:
            await writer.close()
            if isinstance(exc, sqlite3.Error):
                raise _store_error(exc, f"{path}: cannot use the database") from exc
            raise
        return cls(path, writer, reader, (stat.st_dev, stat.st_ino))

    def file_lost(self) -> str | None:
        """Why the file at `path` is no longer the database this opened (deleted, or another
        file put in its place), or None. Whatever is written from then on goes to a file no
        one will open again: logged CRITICAL when first seen. Blocking (a stat)."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            lost: str | None = "was deleted"
        except OSError as exc:
            lost = f"cannot be seen ({exc.strerror})"
        else:
            same = (stat.st_dev, stat.st_ino) == self._identity
            lost = None if same else "was replaced by another file"
        if lost is not None and self._lost is None:
            log.critical(
                "%s %s while the daemon runs: what it records from now on is lost when it "
                "stops. Stop it, then restore a backup or run `facturasd rebuild-ledger` "
                '(docs/install.md, "The ledger was lost")',
                self.path,
                lost,
            )
        self._lost = lost
        return lost

    async def close(self) -> None:
        async with self._flush_lock:
            await self._writer.close()
            await self._reader.close()

    async def write(self, op: Op[T]) -> T:
        """Runs `op` in a write transaction, committed (fsync'd) when this returns. To write
        more in the same transaction, pass the connection along (as `Queue.add` takes it)."""
        entry: _Pending[T] = _Pending(op)
        self._pending.append(entry)
        try:
            async with self._flush_lock:
                if not entry.done.is_set():
                    batch, self._pending = self._pending, []
                    # A cancelled caller must not leave a half-done transaction behind.
                    with anyio.CancelScope(shield=True):
                        try:
                            await _on_thread(self._writer, partial(self._commit, batch=batch))
                        except Exception as exc:  # the connection itself failed (closed)
                            for waiting in batch:
                                waiting.result, waiting.error = None, waiting.error or exc
                        finally:
                            for waiting in batch:
                                waiting.done.set()
        except BaseException:
            if entry in self._pending:
                self._pending.remove(entry)
            raise
        await entry.done.wait()
        if entry.error is not None:
            raise _unavailable(entry.error) or entry.error
        for callback in entry.after:
            callback()
        return entry.result  # type: ignore[return-value]

    async def read(self, op: Op[T]) -> T:
        """Runs `op` on the reader connection, in one trip to its thread."""
        try:
            return await _on_thread(self._reader, op)
        except sqlite3.Error as exc:
            if (error := _unavailable(exc)) is None:
                raise
            raise error from exc

    def _commit(self, conn: sqlite3.Connection, *, batch: list[_Pending[Any]]) -> None:
        """The batch in one transaction, on the writer's thread. Should one operation raise,
        the transaction is rolled back and each operation runs again in its own, so the others
        still commit and only that one fails (optimistic: a savepoint per operation would cost
        two more statements each, on every batch)."""
        failed = self._transaction(conn, batch)
        if failed is not None and len(batch) > 1:
            for entry in batch:
                self._transaction(conn, [entry])
        # Commits to a file deleted or replaced under the daemon are lost when it stops: the
        # first batch after tells, whether or not anyone asks /health (a stat beside an fsync).
        self.file_lost()

    def _transaction(
        self, conn: sqlite3.Connection, entries: list[_Pending[Any]]
    ) -> _Pending[Any] | None:
        """Runs `entries` in one transaction. If one of them raised, all are rolled back and
        marked with the error (its own, or the one that undid theirs) and it is returned; an
        error of the transaction itself (the database locked, the disk full) marks them all
        and returns None: running them one by one would only meet it again."""
        for entry in entries:
            entry.result, entry.error = None, None
            entry.after.clear()
        try:
            conn.execute("BEGIN IMMEDIATE")
            for entry in entries:
                _running.entry = entry
                try:
                    entry.result = entry.op(conn)
                except BaseException as exc:
                    entry.error = exc
                    raise
                finally:
                    _running.entry = None
            conn.execute("COMMIT")
            self.stats.commits += 1
            self.stats.operations += len(entries)
            return None
        except BaseException as exc:
            culprit = next((e for e in entries if e.error is not None), None)
            # Nothing of the transaction was committed, whatever happens next.
            for entry in entries:
                entry.result, entry.error = None, entry.error or exc
                entry.after.clear()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if not isinstance(exc, Exception):
                raise  # the thread is being stopped: no more batches
            return culprit

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return await self.read(lambda conn: conn.execute(sql, tuple(params)).fetchall())

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        """The first row of a query (a SELECT: what is left of it is not needed)."""
        row: sqlite3.Row | None = await self.read(
            lambda conn: conn.execute(sql, tuple(params)).fetchone()
        )
        return row


async def _on_thread(conn: aiosqlite.Connection, op: Op[T]) -> T:
    """`op(sqlite3 connection)` on the aiosqlite connection's own thread, in one trip. (This
    is what aiosqlite does for each of its methods; its public API has no way to run several
    statements and the Python between them in one go, hence its private `_execute`. The
    version range in pyproject.toml is the one this was tested with.)"""
    result: T = await conn._execute(op, conn._conn)  # type: ignore[no-untyped-call]
    return result


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    schema_version: int
    jobs: int
    invoices: int


async def backup_file(
    source: Path, dest: str | os.PathLike[str], step: Step | None = None
) -> BackupResult:
    """`facturasd backup`: an online copy of `source`, checked before it is reported. `dest`
    is a file to create, or a folder (one that exists, or a path ending in `/`) to create one
    in, named after the time. The folder must exist: a mistyped or unmounted backup disk is
    refused rather than created on the local disk. A backup never replaces a file. `step`
    is told how far the copy and then its check are (`facturasd.progress`)."""
    if not await anyio.Path(source).is_file():
        raise StoreError(f"{source}: no database here (is paths.state_dir right?)")
    into_folder = os.fspath(dest).endswith(os.sep) or await anyio.Path(dest).is_dir()
    path = Path(dest)
    folder = path if into_folder else path.parent
    if not await anyio.Path(folder).is_dir():
        raise StoreError(
            f"{folder}: no such folder (a mistyped path, or a disk not mounted?); "
            "create it first if it is the right one"
        )
    try:
        if into_folder:
            path = await anyio.to_thread.run_sync(_new_backup, folder, source.stem)
        else:
            await anyio.to_thread.run_sync(_reserve, path)
    except FileExistsError:
        raise StoreError(f"{path}: already exists; choose another name or a folder") from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot write a backup there: {exc.strerror}") from None
    try:
        return await _copy_and_check(source, path, step)
    except BaseException as exc:
        with anyio.CancelScope(shield=True):
            await anyio.Path(path).unlink(missing_ok=True)
        if isinstance(exc, sqlite3.Error):
            raise _store_error(exc, f"{source}: cannot back up to {path}") from exc
        if isinstance(exc, OSError):
            raise StoreError(f"{path}: cannot write the backup: {exc.strerror}") from exc
        raise


async def _watch_copy(tmp: Path, size: int, total: int, step: Step) -> None:
    """Tells `step` the bytes VACUUM INTO has written to `tmp` so far, until cancelled."""
    while True:
        try:
            written = (await anyio.Path(tmp).stat()).st_size
        except FileNotFoundError:  # not begun yet
            written = 0
        step(min(written, size), total)  # (pages added meanwhile are not in the snapshot)
        await anyio.sleep(WATCH_COPY_EVERY)


def _new_backup(folder: Path, stem: str) -> Path:
    """A new file in `folder` named after the time, created empty: `-2`, `-3`… after the name
    when backups are made within the same second."""
    name = f"{stem}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    path, n = folder / f"{name}.db", 1
    while True:
        try:
            _reserve(path)
            return path
        except FileExistsError:
            n += 1
            path = folder / f"{name}-{n}.db"


async def _copy_and_check(source: Path, dest: Path, step: Step | None) -> BackupResult:
    async with aiosqlite.connect(source) as conn:
        await _pragma(conn, f"busy_timeout = {BUSY_TIMEOUT_MS}")
        # The copy is at most the source's pages (VACUUM INTO leaves out the free ones).
        pages, page_size = await _pragma(conn, "page_count"), await _pragma(conn, "page_size")
        assert isinstance(pages, int) and isinstance(page_size, int)  # what SQLite gives
        size = pages * page_size
        total = size + size // CHECK_SPEED
        async with anyio.create_task_group() as copying:
            if step is not None:
                copying.start_soon(_watch_copy, _temporary(dest), size, total, step)
            await backup_connection(conn, dest)
            copying.cancel_scope.cancel()
    if step is not None:
        step(size, total)
    async with aiosqlite.connect(dest) as copy:
        check = await _pragma(copy, "quick_check")
        if check != "ok":
            raise StoreError(f"{dest}: the copy failed its integrity check: {check}")
        if step is not None:
            step(total, total)
        counts = []
        for sql in (
            "SELECT MAX(version) FROM schema_version",
            "SELECT COUNT(*) FROM jobs",
            "SELECT COUNT(*) FROM invoices",
        ):
            async with copy.execute(sql) as cursor:
                row = await cursor.fetchone()
                counts.append(int(row[0]) if row and row[0] is not None else 0)
    size = (await anyio.Path(dest).stat()).st_size
    return BackupResult(dest, size, *counts)
