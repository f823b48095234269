"""One circuit breaker per authority: after `threshold` calls in a row got no answer, calls
stop (open) for `cooldown` seconds; then one call is let through as a probe (half-open). An
answer closes the circuit; no answer opens it again. Kept in memory: a restart starts closed,
and the first calls find out."""

from __future__ import annotations

from enum import StrEnum

from facturasd.clock import Clock, utcnow

THRESHOLD = 5
PROBE_WAIT = 10.0


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Circuit:
    def __init__(self, *, cooldown: float, threshold: int = THRESHOLD, clock: Clock = utcnow):
        self.cooldown = cooldown
        self.threshold = threshold
        self._clock = clock
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_at = 0.0

    def _now(self) -> float:
        return self._clock().timestamp()

    def allow(self) -> bool:
        """Whether a call may go now. Once the cool-down is over one call goes, the probe; the
        others wait for its answer, or for another cool-down if it never gets one."""
        if self._state is CircuitState.CLOSED:
            return True
        now = self._now()
        if now < self._probe_at:
            return False
        self._state, self._probe_at = CircuitState.HALF_OPEN, now + self.cooldown
        return True

    def succeeded(self) -> bool:
        """The authority answered. Returns whether this closed the circuit (calls resume)."""
        reopened = self._state is not CircuitState.CLOSED
        self._state, self._failures, self._opened_at = CircuitState.CLOSED, 0, None
        return reopened

    def failed(self) -> None:
        """A call got no answer."""
        self._failures += 1
        if self._state is CircuitState.HALF_OPEN or (
            self._state is CircuitState.CLOSED and self._failures >= self.threshold
        ):
            now = self._now()
            if self._opened_at is None:
                self._opened_at = now
            self._state, self._probe_at = CircuitState.OPEN, now + self.cooldown

    def retry_in(self) -> float:
        """Seconds until a call may go again (0 when it may now). While a probe is out, a few
        seconds: its answer may close the circuit any moment."""
        if self._state is CircuitState.CLOSED:
            return 0.0
        wait = max(0.0, self._probe_at - self._now())
        return min(wait, PROBE_WAIT) if self._state is CircuitState.HALF_OPEN else wait

    @property
    def state(self) -> CircuitState:
        return self._state

    @property
    def opened_at(self) -> float | None:
        """When it opened (a timestamp of the clock), until it closes again."""
        return self._opened_at
