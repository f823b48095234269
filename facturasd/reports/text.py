"""Markdown for the reports: tables whose cells are whatever a supplier wrote, escaped so a
name cannot break a table or become a link."""

from __future__ import annotations

import re
from collections.abc import Sequence

# What Markdown would act on inside a table cell: emphasis, code, links, HTML, the column bar.
_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def cell(value: object) -> str:
    """`value` as one table cell: special characters escaped, line breaks as spaces, a dash
    when there is nothing."""
    if value is None or value == "":
        return "—"
    return _SPECIAL.sub(r"\\\1", " ".join(str(value).split()))


def table(
    header: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = ()
) -> str:
    """A Markdown table; the columns numbered in `right` (amounts, counts) aligned right."""
    marks = ["---:" if n in right else "---" for n in range(len(header))]
    lines = [
        "| " + " | ".join(cell(h) for h in header) + " |",
        "| " + " | ".join(marks) + " |",
        *("| " + " | ".join(cell(v) for v in row) + " |" for row in rows),
    ]
    return "\n".join(lines)
