"""How a report's files are written: each one whole or not at all, and the CSV the way Excel
reads it where the company is.

Excel takes a CSV's separator and decimal mark from the computer's regional settings: in
Colombia ";" between fields and "," before the decimals, in Mexico "," and ".". A CSV written
for the other country opens as one column, or with amounts read as text. UTF-8 with a BOM is
what makes Excel read the accents of a supplier's name as UTF-8.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from facturasd.config import Config

# (separator, decimal mark) by country; a country not known writes as Colombia does.
_BY_COUNTRY = {"CO": (";", ","), "MX": (",", ".")}
DEFAULT_COUNTRY = "CO"
# How a cell that Excel would take for a formula begins.
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Written:
    """The files of one report: for people, for machines, for a spreadsheet."""

    md: Path
    json: Path
    csv: Path


@dataclass(frozen=True)
class Dialect:
    separator: str
    decimal: str

    def number(self, text: str | None) -> str:
        """A printed decimal ("20384700.00") as a number this dialect's Excel reads; empty
        when there is none. Without thousands separators: they are optional to Excel, and a
        number without them cannot be misread."""
        if text is None:
            return ""
        return text.replace(".", self.decimal) if self.decimal != "." else text


def text(value: str | None) -> str:
    """A text cell (a supplier's name, an invoice number: whatever a document says) that
    Excel shows as text: one that begins as a formula would (=, +, -, @) is prefixed with a
    quote, so a crafted name is never run as one."""
    if not value:
        return ""
    return f"'{value}" if value[0] in _FORMULA else value


def dialect(config: Config) -> Dialect:
    """The CSV's dialect: `[reports]` csv_separator and csv_decimal when set, else the first
    company's country (Colombia's when there is none)."""
    country = config.companies[0].country if config.companies else DEFAULT_COUNTRY
    separator, decimal = _BY_COUNTRY.get(country, _BY_COUNTRY[DEFAULT_COUNTRY])
    return Dialect(config.reports.csv_separator or separator, config.reports.csv_decimal or decimal)


def csv_text(header: Sequence[str], rows: Iterable[Sequence[str]], form: Dialect) -> str:
    """The CSV of `rows` under `header`, fields separated by the dialect's separator (quoted
    when they hold it, a quote or a line break), lines ended by CRLF as Excel writes them."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=form.separator, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


# Excel reads a CSV as UTF-8 only when it begins with this mark.
BOM = "\ufeff"


def write_report(folder: Path, stem: str, md: str, json_text: str, csv_body: str) -> Written:
    """The report's three files `stem`.md/.json/.csv in `folder`, each whole or not at all:
    a temporary file in the same folder, flushed to disk, then renamed over the name (a
    reader, or the mail that attaches it, never sees half a report). Blocking: run it in a
    thread."""
    written = Written(folder / f"{stem}.md", folder / f"{stem}.json", folder / f"{stem}.csv")
    contents = {
        written.md: md.encode(),
        written.json: json_text.encode(),
        written.csv: (BOM + csv_body).encode(),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for path, content in contents.items():
        part = path.with_name(f".{path.name}.part")
        with part.open("wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(part, path)
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)  # the renames themselves survive a power cut
    finally:
        os.close(descriptor)
    return written
