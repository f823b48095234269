"""The tax rules the checks apply, read from the versioned files in `rules/` (co.toml, mx.toml).

The files are data with their legal sources in comments; this module only gives them a shape
and refuses a file that does not fit it, naming what is wrong.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib.resources import files

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from facturasd.errors import RulesError


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RateRule(_Rule):
    """The rates a tax may carry: a fixed list, a range, or (neither) any."""

    name: str
    rates: tuple[Decimal, ...] = ()
    range: tuple[Decimal, Decimal] | None = None

    def knows(self, rate: Decimal) -> bool:
        if self.range is not None:
            return self.range[0] <= rate <= self.range[1]
        return not self.rates or rate in self.rates

    def describe(self) -> str:
        if self.range is not None:
            return f"{self.range[0]}–{self.range[1]} %"
        return ", ".join(f"{rate} %" for rate in self.rates)


class Uvt(_Rule):
    value: Decimal
    source: str


class Concept(_Rule):
    name: str
    rate: Decimal
    base_uvt: Decimal
    goods: bool


class IcaCity(_Rule):
    name: str
    base_uvt_goods: Decimal
    base_uvt_services: Decimal
    rates: dict[str, Decimal]


class ReteIva(_Rule):
    rate: Decimal


class Colombia(_Rule):
    version: str
    taxes: dict[str, RateRule]
    withholdings: dict[str, RateRule]
    uvt: dict[int, Uvt]
    reteiva: ReteIva
    concepts: dict[str, Concept]
    ica: dict[str, IcaCity]

    @model_validator(mode="after")
    def _ica_rates_cover_the_concepts(self) -> Colombia:
        for city, table in self.ica.items():
            if set(table.rates) != set(self.concepts):
                raise ValueError(
                    f"ica.{city}.rates must give a rate for each concept, exactly: "
                    f"missing {sorted(set(self.concepts) - set(table.rates))}, "
                    f"unknown {sorted(set(table.rates) - set(self.concepts))}"
                )
        return self

    def uvt_for(self, year: int) -> tuple[int, Uvt]:
        """The UVT of `year`, or of the nearest year the file knows (with that year)."""
        known = min(self.uvt, key=lambda y: (abs(y - year), -y))
        return known, self.uvt[known]


class MxTax(_Rule):
    """c_TasaOCuota for one tax in one direction."""

    name: str
    tasa: tuple[Decimal, ...] = ()
    tasa_range: tuple[Decimal, Decimal] | None = None
    cuota: tuple[Decimal, Decimal] | None = None

    def knows(self, factor: str, rate: Decimal) -> bool:
        if factor == "Cuota":
            return self.cuota is not None and self.cuota[0] <= rate <= self.cuota[1]
        if self.tasa_range is not None and self.tasa_range[0] <= rate <= self.tasa_range[1]:
            return True
        return rate in self.tasa

    def describe(self, factor: str) -> str:
        if factor == "Cuota":
            return f"Cuota {self.cuota[0]}–{self.cuota[1]}" if self.cuota else "sin Cuota"
        listed = [f"{rate} %" for rate in self.tasa]
        if self.tasa_range is not None:
            listed.append(f"{self.tasa_range[0]}–{self.tasa_range[1]} %")
        return ", ".join(listed)


class UsualRates(_Rule):
    name: str
    rates: tuple[Decimal, ...]


class MxTest(_Rule):
    certificate_prefixes: tuple[str, ...]
    rfcs: frozenset[str]


class MxGeneric(_Rule):
    rfcs: frozenset[str]


class Mexico(_Rule):
    version: str
    transferred: dict[str, MxTax]
    withheld: dict[str, MxTax]
    usual_withholding: dict[str, UsualRates]
    test: MxTest
    generic: MxGeneric


@dataclass(frozen=True)
class Rules:
    co: Colombia
    mx: Mexico

    @property
    def version(self) -> str:
        return f"co {self.co.version}, mx {self.mx.version}"


@cache
def load() -> Rules:
    """The rules shipped in facturasd/checks/rules/ (read once)."""
    folder = files("facturasd.checks") / "rules"
    try:
        return Rules(
            co=Colombia.model_validate(
                tomllib.loads(folder.joinpath("co.toml").read_text("utf-8"))
            ),
            mx=Mexico.model_validate(tomllib.loads(folder.joinpath("mx.toml").read_text("utf-8"))),
        )
    except (tomllib.TOMLDecodeError, ValidationError, ValueError) as exc:
        raise RulesError(f"the rules files in {folder} are damaged: {exc}") from exc
