"""Booking in Alegra (SPEC §2.5): the client and its limiter, the cache of look-ups, the bill a
document becomes, and the booking stage that posts it exactly once."""
