"""Received documents, from bytes: pure parsers (no I/O, no clock, no configuration)."""
