"""What every upstream (SAT, DIAN, Alegra) shares on the wire."""

from __future__ import annotations

from datetime import UTC
from email.utils import parsedate_to_datetime

import httpx

from facturasd.clock import Clock, utcnow

# A call without an answer while its circuit is closed (the upstream answers the others): a
# blip, tried again this soon. Five in a row open the circuit, which then paces the calls.
AGAIN_SOON = 5.0


def retry_after(response: httpx.Response, clock: Clock = utcnow) -> float:
    """The seconds `Retry-After` asks to wait (a number, or an HTTP date), else 0."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    if when.tzinfo is None:  # an HTTP date is GMT; a zone-less one is read so
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - clock()).total_seconds())
