"""What every check shares: the findings being collected, and amounts read from the document.

Rounding tolerance. A printed amount is the exact value rounded to the decimals it is printed
with, so it is off by at most half a unit of its last decimal (0.005 for "10.00", 0.5 for
"3254700"). Issuers round per line, then add the rounded lines; or add exact values, then round
once. Either way, an identity the law states between printed amounts (lines add up to the
subtotal; base × rate = tax) holds for the exact values, so between printed values it can be off
by at most the sum of those half-units, each scaled by what multiplies it. That bound is the
tolerance: anything within it is rounding, anything beyond it is an error. It needs no
configuration, follows each document's own decimals, and grows with the number of lines, as
per-line rounding does.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal

from facturasd.findings import Language, finding
from facturasd.formats.model import Document, Finding, Tax

_AMOUNT = re.compile(r"^[+-]?\d+(\.\d+)?$")
LOCAL = "implocal"  # the code of MX local taxes (outside SAT's federal totals and catalogue)


class Findings:
    """Findings collected in one language; a bad amount is reported once per path."""

    def __init__(self, lang: Language) -> None:
        self.lang = lang
        self.items: list[Finding] = []
        self._bad: set[str] = set()

    def add(self, code: str, path: str, /, **values: object) -> None:
        self.items.append(finding(code, path, self.lang, **values))

    def amount(self, value: str | None, path: str, required: bool = False) -> Decimal | None:
        """`value` as a Decimal; None (reported at `path`) if it is not a plain number, or if
        it is missing and `required`."""
        if value is None:
            if required:
                self._once("DOC-MISSING-AMOUNT", path)
            return None
        number = plain_number(value)
        if number is None:
            self._once("DOC-BAD-AMOUNT", path, value=value)
        return number

    def terms(self, *items: tuple[str | None, str, int, bool]) -> list[Decimal] | None:
        """The signed amounts of printed (value, path, sign, required) items, absent optional
        ones left out; None if one is missing or unreadable (reported)."""
        found: list[Decimal] = []
        readable = True
        for value, path, sign, required in items:
            if value is None and not required:
                continue
            amount = self.amount(value, path, required)
            if amount is None:
                readable = False
            else:
                found.append(amount * sign)
        return found if readable else None

    def _once(self, code: str, path: str, **values: object) -> None:
        if path not in self._bad:
            self._bad.add(path)
            self.add(code, path, **values)


def plain_number(value: str | None) -> Decimal | None:
    """`value` as a Decimal if it is a plain number ("-12.50"; no exponent, no separators)."""
    if value is None or len(value) > 40 or not _AMOUNT.match(value):
        return None
    return Decimal(value)


def half_unit(value: Decimal) -> Decimal:
    """Half a unit of the last decimal `value` is printed with: 0.005 for 10.00."""
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # plain numbers only (Findings.amount)
    return Decimal(5).scaleb(exponent - 1)


def balances(terms: Iterable[Decimal]) -> bool:
    """Whether the signed printed `terms` add up to zero within their rounding."""
    terms = list(terms)
    return abs(sum(terms, Decimal(0))) <= sum((half_unit(t) for t in terms), Decimal(0))


def product_agrees(printed: Decimal, a: Decimal, b: Decimal, scale: Decimal = Decimal(1)) -> bool:
    """Whether a × b × scale is `printed` within the rounding of all three printed numbers
    (scale is exact: 1/100 for a rate in percent)."""
    ha, hb = half_unit(a), half_unit(b)
    slack = half_unit(printed) + (ha * abs(b) + hb * abs(a) + ha * hb) * scale
    return abs(a * b * scale - printed) <= slack


def like(value: Decimal, printed: Decimal) -> str:
    """`value` printed with the decimals of `printed`, for a message."""
    exponent = printed.as_tuple().exponent
    assert isinstance(exponent, int)
    return str(value.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_HALF_UP))


def plain(value: Decimal) -> str:
    """A rate without trailing zeros, never in exponent form: 19.00 -> 19."""
    return format(value.normalize(), "f")


def taxes_of(doc: Document, group: str) -> list[tuple[str, Tax, bool]]:
    """(path, tax, on a line?) for every tax of `group` ("taxes" or "withholdings"), the
    document's first, then each line's."""
    found = [(f"{group}[{k}]", tax, False) for k, tax in enumerate(getattr(doc, group))]
    for i, line in enumerate(doc.lines):
        found += [
            (f"lines[{i}].{group}[{j}]", tax, True) for j, tax in enumerate(getattr(line, group))
        ]
    return found


def fold(text: str) -> str:
    """`text` for comparing by eye: no case, no accents, single spaces ("Ñandú  S.A" ->
    "nandu s.a")."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(bare.casefold().split())
