"""The circuit breaker of an authority: calls stop after failures in a row, one probe after
the cool-down, an answer resumes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from facturasd.authorities.circuit import Circuit, CircuitState


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def test_calls_stop_after_failures_in_a_row_and_one_probe_goes_after_the_cooldown() -> None:
    clock = Clock()
    circuit = Circuit(cooldown=300, threshold=3, clock=clock)
    for _ in range(2):
        assert circuit.allow()
        circuit.failed()
    assert circuit.succeeded() is False  # an answer resets the count: it was never open
    for _ in range(3):
        assert circuit.allow()
        circuit.failed()
    assert circuit.state is CircuitState.OPEN
    assert not circuit.allow()
    assert circuit.retry_in() == 300
    clock.advance(299)
    assert not circuit.allow()
    clock.advance(1)
    assert circuit.allow()  # the probe
    assert not circuit.allow()  # the others wait for its answer: a few seconds, not a cool-down
    assert circuit.retry_in() == 10
    circuit.failed()  # no answer: open again, for another cool-down
    assert circuit.state is CircuitState.OPEN and circuit.retry_in() == 300
    clock.advance(300)
    assert circuit.allow()
    assert circuit.succeeded() is True  # the probe answered: calls resume
    assert circuit.state is CircuitState.CLOSED
    assert circuit.allow() and circuit.allow()


def test_a_probe_that_never_answers_does_not_hold_the_circuit_forever() -> None:
    clock = Clock()
    circuit = Circuit(cooldown=60, threshold=1, clock=clock)
    circuit.failed()
    clock.advance(60)
    assert circuit.allow()  # the probe goes, and its job is killed before an answer
    assert not circuit.allow()
    clock.advance(60)
    assert circuit.allow()  # another probe, one cool-down later
