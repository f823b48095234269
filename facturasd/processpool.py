"""Worker processes for CPU work (parsing and checking), out of the terminal's reach.

Each worker process starts in a session of its own. Ctrl-C in a terminal sends SIGINT to the
whole foreground process group: worker processes in that group would each raise
KeyboardInterrupt in the middle of a parse (or of their own start-up), whatever the daemon
does with its own SIGINT. In their own session only the daemon gets it, stops as on SIGTERM,
and closes them. (`anyio.to_process` starts its workers in the daemon's group, and offers no
way to start them elsewhere.)

A worker runs one call at a time, reads its calls from its stdin and writes each result to its
stdout; its stderr is the daemon's. At most `size` run at once; idle ones are reused. A call
whose worker dies (killed, out of memory) raises `anyio.BrokenWorkerProcess` and the next call
starts a new one. A call cancelled (a shutdown past its timeout) kills its worker: what runs
here only reads, so nothing is left half done.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar, TypeVarTuple, cast

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream, Process
from anyio.streams.buffered import BufferedByteReceiveStream

T = TypeVar("T")
Args = TypeVarTuple("Args")

# The length of a reply, ahead of it.
_SIZE_BYTES = 8
# How long a worker process whose pipes broke has to exit before it is killed.
_ENDING_WAIT = 5.0


class ProcessPool:
    def __init__(self, size: int):
        self._limiter = anyio.CapacityLimiter(size)
        self._idle: list[_Worker] = []

    async def __aenter__(self) -> ProcessPool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def run(self, func: Callable[[*Args], T], *args: *Args) -> T:
        """`func(*args)` in a worker process: its result, or the exception it raised. `func`
        must be a module's function (it is pickled by name), its arguments and its result
        picklable."""
        request = pickle.dumps((func, args), protocol=pickle.HIGHEST_PROTOCOL)
        async with self._limiter:
            worker = self._idle.pop() if self._idle else await _Worker.start()
            try:
                ok, value = await worker.call(request)
            except (
                anyio.BrokenResourceError,
                anyio.EndOfStream,
                anyio.IncompleteRead,
                ConnectionError,  # (a pipe to a process that is gone, as asyncio says it)
            ) as exc:
                status = await worker.ended()
                raise anyio.BrokenWorkerProcess(
                    f"a worker process ended before it answered (exit status {status})"
                ) from exc
            except BaseException:  # cancelled: the worker may be in the middle of the call
                await worker.kill()
                raise
            self._idle.append(worker)
        if not ok:
            raise cast(BaseException, value)
        return cast(T, value)

    async def aclose(self) -> None:
        """Ends the idle workers: each exits once its stdin is closed."""
        idle, self._idle = self._idle, []
        with anyio.CancelScope(shield=True):
            for worker in idle:
                await worker.process.aclose()


@dataclass
class _Worker:
    process: Process
    replies: BufferedByteReceiveStream

    @classmethod
    async def start(cls) -> _Worker:
        process = await anyio.open_process(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            start_new_session=True,
        )
        return cls(process, BufferedByteReceiveStream(cast(ByteReceiveStream, process.stdout)))

    async def call(self, request: bytes) -> tuple[bool, Any]:
        await cast(ByteSendStream, self.process.stdin).send(request)
        size = int.from_bytes(await self.replies.receive_exactly(_SIZE_BYTES), "big")
        ok, value = pickle.loads(await self.replies.receive_exactly(size))  # noqa: S301 (ours)
        return ok, value

    async def ended(self) -> int | None:
        """Waits for a process whose pipes broke to exit (killed if it does not, soon): its exit
        status. (Killing it at once could reap it before asyncio does, which then says 255.)"""
        with anyio.CancelScope(shield=True), anyio.move_on_after(_ENDING_WAIT):
            await self.process.wait()
        return await self.kill()

    async def kill(self) -> int | None:
        """Kills the process unless it has exited, and waits for it: its exit status."""
        with anyio.CancelScope(shield=True):
            if self.process.returncode is None:
                self.process.kill()
            await self.process.aclose()  # (which waits for it)
        return self.process.returncode


def _serve() -> None:
    """A worker process: runs each call read from stdin and writes its outcome to stdout,
    until stdin is closed."""
    calls, replies = sys.stdin.buffer, sys.stdout.buffer
    # The pipes are the pool's: whatever a library prints goes to stderr instead.
    sys.stdin = open(os.devnull)  # noqa: SIM115 (for the process's life)
    sys.stdout = sys.stderr
    while True:
        try:
            func, args = pickle.load(calls)  # noqa: S301 (the daemon's own calls)
        except EOFError:
            return
        try:
            outcome: tuple[bool, Any] = (True, func(*args))
        except Exception as exc:
            outcome = (False, exc)
        try:
            data = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # a result or an exception that does not pickle
            failed = RuntimeError(f"{type(exc).__name__}: {exc}")
            data = pickle.dumps((False, failed), protocol=pickle.HIGHEST_PROTOCOL)
        replies.write(len(data).to_bytes(_SIZE_BYTES, "big") + data)
        replies.flush()


if __name__ == "__main__":
    _serve()
