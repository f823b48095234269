"""Where received files live, and how they move without ever being lost (SPEC §2.1).

Every file leaves the inbox for `archive/YYYY/MM/DD/<sha256[:12]>-<name>` (the date of receipt
in the configured time zone); `rejected/` and `duplicates/` keep the same layout. A move is a
rename on one filesystem; across filesystems it is copy, fsync, rename, then unlink, so at every
instant the file exists whole in one place at least. Moves are idempotent: a move whose source
is gone and whose destination exists has already happened (a crash in between is resumed by
doing it again). A move refused because the service's user cannot write in the folder it goes
to, or in the one it leaves, raises `FolderNotWritable`, which names that folder and the fix (a
problem of the folder, not of the file). Blocking calls: run them in a thread.
"""

from __future__ import annotations

import errno
import functools
import os
import pwd
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path, PurePosixPath

from facturasd.config import Paths

# Longest file name most filesystems take, in bytes.
MAX_NAME_BYTES = 255
MOTIVO_SUFFIX = ".motivo.txt"


class Folder(StrEnum):
    ARCHIVE = "archive"
    REJECTED = "rejected"
    DUPLICATES = "duplicates"


class FolderNotWritable(OSError):
    """A file cannot be moved into or out of `folder`: the service's user may not create or
    remove files there (its permissions or a read-only mount; the file itself is fine)."""

    def __init__(self, folder: Path, code: int):
        super().__init__(code, os.strerror(code), str(folder))
        self.folder = folder

    def __str__(self) -> str:
        if self.errno == errno.EROFS:
            return (
                f"{self.folder} is on a read-only mount: mount it read-write (under systemd: "
                "the data root in the unit's ReadWritePaths=)"
            )
        return f"{self.folder} cannot be written: make it writable by the service user ({_user()})"


@dataclass(frozen=True)
class Folders:
    inbox: Path
    archive: Path
    rejected: Path
    duplicates: Path
    # Folders inside these that refused a file: shown by `unwritable` until they can be
    # written (moves run in threads, /health in another).
    _refused: set[Path] = field(default_factory=set, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    @classmethod
    def from_paths(cls, paths: Paths) -> Folders:
        return cls(paths.inbox, paths.archive, paths.rejected, paths.duplicates)

    def root(self, folder: Folder) -> Path:
        return {
            Folder.ARCHIVE: self.archive,
            Folder.REJECTED: self.rejected,
            Folder.DUPLICATES: self.duplicates,
        }[folder]

    def placed(self, name: PurePosixPath, folder: Folder) -> Path:
        return self.root(folder) / name

    def relocated(self, path: Path, folder: Folder) -> Path:
        """The same dated name as `path` (under any of the three roots) under `folder`."""
        for root in (self.archive, self.rejected, self.duplicates):
            if path.is_relative_to(root):
                return self.root(folder) / path.relative_to(root)
        raise ValueError(f"{path} is in none of the archive folders")

    def move(self, source: Path, dest: Path) -> None:
        """`move`, remembering a folder that refused it for `unwritable`."""
        try:
            move(source, dest)
        except FolderNotWritable as exc:
            with self._lock:
                self._refused.add(exc.folder)
            raise

    def unwritable(self) -> dict[str, list[FolderNotWritable]]:
        """For the inbox and each of the three folders, what keeps files from being moved out
        of it or into it now: the folder itself, or a folder in it that refused a file
        (forgotten once it can be written)."""
        roots = {"inbox": self.inbox, **{folder.value: self.root(folder) for folder in Folder}}
        with self._lock:
            refused = set(self._refused)
        checked = {place: refused_in(place) for place in {*roots.values(), *refused}}
        with self._lock:
            self._refused.difference_update(p for p in refused if checked[p] is None)
        found: dict[str, list[FolderNotWritable]] = {}
        for name, root in roots.items():
            problems: dict[Path, FolderNotWritable] = {}  # the folder itself first, each once
            for place, problem in sorted(checked.items()):
                if problem is not None and place.is_relative_to(root):
                    problems.setdefault(problem.folder, problem)
            found[name] = list(problems.values())
        return found


def dated_name(received: datetime, sha256: str, name: str, tag: str = "") -> PurePosixPath:
    """`YYYY/MM/DD/<sha256[:12]>[-tag]-<name>`, the name cut (keeping its extension) to fit
    the filesystem's limit, and `.motivo.txt` after it."""
    prefix = f"{sha256[:12]}-{tag + '-' if tag else ''}"
    # Room for the reason beside it, written under a temporary name first (.<name>.part).
    room = MAX_NAME_BYTES - len(prefix.encode()) - len(MOTIVO_SUFFIX.encode()) - len("..part")
    if len(name.encode()) > room:
        stem, dot, ext = name.rpartition(".")
        keep = f"{dot}{ext}" if dot and len(ext.encode()) < 16 else ""
        cut = (stem if keep else name).encode()[: room - len(keep.encode())]
        name = cut.decode(errors="ignore") + keep
    return PurePosixPath(received.strftime("%Y/%m/%d")) / f"{prefix}{name}"


def original_name(
    name: PurePosixPath, sha256: str, taken: Callable[[PurePosixPath], bool]
) -> str | None:
    """The name a file came with, read back from its dated name (`dated_name`'s inverse);
    None if the name does not start with its bytes' prefix (not a name facturasd gave them).
    `-<n>-` after the prefix is a tag only if the name without it is `taken` (the first
    file of that day); else it belongs to the name. A name cut to fit comes back cut."""
    prefix = f"{sha256[:12]}-"
    if not name.name.startswith(prefix):
        return None
    rest = name.name[len(prefix) :]
    tag, _, after = rest.partition("-")
    if tag.isdigit() and int(tag) >= 2 and after and taken(name.with_name(prefix + after)):
        return after
    return rest


def archived(folders: Folders) -> Iterator[tuple[Folder, PurePosixPath]]:
    """Every file of the three folders, as (folder, its name under it), in name order: not
    the `.motivo.txt` beside them, nor the hidden names a move or a write uses meanwhile."""
    for folder in Folder:
        root = folders.root(folder)
        for parent, dirs, files in os.walk(root):
            dirs.sort()
            for file in sorted(files):
                path = Path(parent) / file
                if file.startswith(".") or file.endswith(MOTIVO_SUFFIX) or path.is_symlink():
                    continue
                yield folder, PurePosixPath(path.relative_to(root).as_posix())


def taken(folders: Folders, name: PurePosixPath) -> bool:
    """Whether a file of this dated name is in any of the three folders already."""
    return any(
        (folders.root(folder) / name).exists() or (folders.root(folder) / name).is_symlink()
        for folder in Folder
    )


def refused_in(folder: Path) -> FolderNotWritable | None:
    """What keeps the service's user from creating or removing files in `folder` (one that
    does not exist yet: in the nearest folder above it that does, where it would be made), if
    anything."""
    existing = next(p for p in (folder, *folder.parents) if p.is_dir())
    if os.access(existing, os.W_OK | os.X_OK):
        return None
    read_only = os.statvfs(existing).f_flag & os.ST_RDONLY
    return FolderNotWritable(existing, errno.EROFS if read_only else errno.EACCES)


def move(source: Path, dest: Path) -> None:
    """Move `source` to `dest` (created folders included), never leaving a moment without a
    whole copy, and never over another file (FileExistsError). Idempotent: done already when
    `source` is gone and `dest` exists. FolderNotWritable if the folder it goes to, or the one
    it leaves, refuses it."""
    try:
        _move(source, dest)
    except OSError as exc:
        # Refused: by the folder it goes to, by the one it leaves, or else by the file itself.
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            for folder in (dest.parent, source.parent):
                if (problem := refused_in(folder)) is not None:
                    raise problem from exc
        raise


def _move(source: Path, dest: Path) -> None:
    if source == dest or (not source.exists() and dest.exists()):
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not (dest.exists() and same_file(source, dest)):  # else: placed before a crash
        _place(source, dest)
    _fsync_dir(dest.parent)
    source.unlink()
    _fsync_dir(source.parent)


def _place(source: Path, dest: Path) -> None:
    """`dest` made a whole copy of `source` (a second link to it on one filesystem), failing
    if `dest` exists. Until `source` is unlinked both names exist: a crash there leaves the
    same bytes twice, never none."""
    try:
        os.link(source, dest)
        return
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise FileExistsError(errno.EEXIST, "will not replace", str(dest)) from None
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            raise
    # Across filesystems (or where hard links are not allowed): a whole, fsync'd copy under a
    # temporary name, then its final one.
    partial = dest.with_name(f".{dest.name}.part")
    with source.open("rb") as reader, partial.open("wb") as writer:
        shutil.copyfileobj(reader, writer, 1 << 20)
        writer.flush()
        os.fsync(writer.fileno())
    try:
        os.link(partial, dest)
        partial.unlink()
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            partial.unlink()
            raise FileExistsError(errno.EEXIST, "will not replace", str(dest)) from None
        if dest.exists():
            raise
        os.rename(partial, dest)  # no hard links here at all


def same_file(a: Path, b: Path) -> bool:
    """The same file under two names (a hard link), or a whole copy of it (same bytes)."""
    if os.path.samefile(a, b):
        return True
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as first, b.open("rb") as second:
        while chunk := first.read(1 << 20):
            if chunk != second.read(len(chunk)):
                return False
    return True


def write_atomically(path: Path, data: str | bytes) -> None:
    """`data` (text is written as UTF-8) in `path`, whole or not at all (a reader never sees
    half a file), and still there after a power cut."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    with partial.open("wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(partial, path)
    _fsync_dir(path.parent)


@functools.cache
def _user() -> str:
    """The name of the user this process runs as: the one that must be able to write."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a user without a name (a container's, say)
        return str(os.geteuid())


def motivo_path(path: Path) -> Path:
    return path.with_name(path.name + MOTIVO_SUFFIX)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
