"""How a kind of work went lately: attempts and failures in a sliding window, and the first line
of the last failure, for /health to say that work is failing and why."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from facturasd.clock import Clock, utcnow

WINDOW = 120.0  # seconds of outcomes kept


@dataclass(frozen=True)
class Recent:
    attempts: int
    failures: int
    last_error: str | None  # the first line of the last failure


class Tally:
    def __init__(self, *, clock: Clock = utcnow, window: float = WINDOW):
        self._clock = clock
        self.window = window
        # (when, None for a success or the failure's first line)
        self._outcomes: deque[tuple[float, str | None]] = deque()

    def succeeded(self) -> None:
        self._add(None)

    def failed(self, error: BaseException | str) -> None:
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self._add(text.strip().splitlines()[0] if text.strip() else type(error).__name__)

    def recent(self) -> Recent:
        self._forget(self._clock().timestamp())
        failures = [error for _, error in self._outcomes if error is not None]
        return Recent(len(self._outcomes), len(failures), failures[-1] if failures else None)

    def _add(self, error: str | None) -> None:
        now = self._clock().timestamp()
        self._outcomes.append((now, error))
        self._forget(now)

    def _forget(self, now: float) -> None:
        while self._outcomes and self._outcomes[0][0] <= now - self.window:
            self._outcomes.popleft()


def tallied(
    take: Callable[[Path], Awaitable[None]], tally: Tally
) -> Callable[[Path], Awaitable[None]]:
    """`take` (the ingest of a file), its outcomes counted in `tally`. A file that went away
    meanwhile is no failure: someone moved it."""

    async def counted(path: Path) -> None:
        try:
            await take(path)
        except FileNotFoundError:
            raise
        except Exception as exc:
            tally.failed(exc)
            raise
        tally.succeeded()

    return counted
