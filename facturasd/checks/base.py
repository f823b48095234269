"""What every check shares: the findings being collected, and amounts read from the document.

Rounding tolerance. A printed amount is the exact value rounded to the decimals it is printed
with, so it is off by at most half a unit of its last decimal (0.005 for "10.00", 0.5 for
"3254700"). Issuers round per line, then add the rounded lines; or add exact values, then round
once. Either way, an identity the law states between printed amounts (lines add up to the
subtotal; base × rate = tax) holds for the exact values, so between printed values it can be off
by at most the sum of those half-units, each scaled by what multiplies it. Rates are exact (the
law's 19.00 %, SAT's 0.160000). That bound is the tolerance: anything within it is rounding,
anything beyond it is an error. It needs no configuration, follows each document's own
decimals, and grows with the number of lines, as per-line rounding does.

CFDI products follow SAT's own limits instead (Anexo 20): the lower one truncated, the upper one
rounded up, to the printed amount's decimals. They are the same half-units, with one more unit
of slack below, and they are what SAT's validation accepts.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_HALF_UP, Decimal

from facturasd.findings import Finding, Param, finding
from facturasd.formats.model import Document, Tax, number

LOCAL = "implocal"  # the code of MX local taxes (outside SAT's federal totals and catalogue)


class Findings:
    """The findings collected; a bad amount is reported once per path."""

    def __init__(self) -> None:
        self.items: list[Finding] = []
        self._bad: set[str] = set()

    def add(self, code: str, path: str, /, **values: Param | Decimal) -> None:
        self.items.append(finding(code, path, **values))

    def amount(self, value: str | None, path: str, required: bool = False) -> Decimal | None:
        """`value` as a Decimal; None (reported at `path`) if it is not a plain number, or if
        it is missing and `required`."""
        if value is None:
            if required:
                self._once("DOC-MISSING-AMOUNT", path)
            return None
        parsed = number(value)
        if parsed is None:
            self._once("DOC-BAD-AMOUNT", path, value=value)
        return parsed

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

    def _once(self, code: str, path: str, **values: Param) -> None:
        if path not in self._bad:
            self._bad.add(path)
            self.add(code, path, **values)


def half_unit(value: Decimal) -> Decimal:
    """Half a unit of the last decimal `value` is printed with: 0.005 for 10.00."""
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # plain numbers only (Findings.amount)
    return Decimal(5).scaleb(exponent - 1)


def balances(terms: Iterable[Decimal]) -> bool:
    """Whether the signed printed `terms` add up to zero within their rounding."""
    terms = list(terms)
    return abs(sum(terms, Decimal(0))) <= sum((half_unit(t) for t in terms), Decimal(0))


def product_agrees(printed: Decimal, a: Decimal, rate: Decimal, scale: Decimal) -> bool:
    """Whether a × rate × scale is `printed` within the rounding of `printed` and `a` (the
    rate is exact; scale is 1/100 for a rate in percent)."""
    slack = half_unit(printed) + half_unit(a) * abs(rate) * scale
    return abs(a * rate * scale - printed) <= slack


def within_sat_limits(
    printed: Decimal, a: Decimal, b: Decimal, scale: Decimal, b_exact: bool
) -> bool:
    """SAT's limits for an amount computed as a × b × scale (Anexo 20): (a − ½u)(b − ½u)
    truncated and (a + ½u)(b + ½u) rounded up, to `printed`'s decimals; ½u is half a unit of
    each factor's last printed decimal (none for an exact TasaOCuota)."""
    ha = half_unit(a)
    hb = Decimal(0) if b_exact else half_unit(b)
    exponent = printed.as_tuple().exponent
    assert isinstance(exponent, int)
    unit = Decimal(1).scaleb(exponent)
    lower = ((abs(a) - ha) * (abs(b) - hb) * scale).quantize(unit, rounding=ROUND_DOWN)
    upper = ((abs(a) + ha) * (abs(b) + hb) * scale).quantize(unit, rounding=ROUND_CEILING)
    return lower <= abs(printed) <= upper


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
