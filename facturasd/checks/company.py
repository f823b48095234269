"""The profile of a company that receives invoices: who it is, and what its checks need to
know (regime, responsibilities, city, the withholding concepts it applies).

It lives with the checks because the checks read it; the configuration's `[[companies]]`
validates into it. A concept a profile names must be one the tax rules know.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from facturasd.checks.rules import load


class _Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConceptRule(_Profile):
    """Which withholding concept an invoice is (CO): chosen by supplier or by a keyword."""

    concept: str
    supplier: str = ""  # the supplier's tax id
    keyword: str = ""  # found in a line's description (case and accents ignored)

    @model_validator(mode="after")
    def _one_selector(self) -> ConceptRule:
        if bool(self.supplier) == bool(self.keyword):
            raise PydanticCustomError(
                "concept_rule", "give either supplier or keyword (one of them)", {}
            )
        return self


class Company(_Profile):
    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str = Field(min_length=1)
    country: Literal["CO", "MX"]
    tax_id: str = Field(min_length=1)
    regime: str = ""
    # CO: DIAN's responsibility codes: O-13 gran contribuyente, O-15 autorretenedor,
    # O-23 IVA withholding agent, O-47 régimen simple.
    tax_level_codes: list[str] = Field(default_factory=list)
    city: str = ""
    postal_code: str = ""
    # CO: the company withholds ReteFuente/ReteIVA/ReteICA from its suppliers.
    withholding_agent: bool = False
    # CO: the withholding concept of an invoice: the first concept rule that matches (by
    # supplier, then by keyword), else this default.
    concept: str = "compras"
    concept_rules: list[ConceptRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known_concepts(self) -> Company:
        known = load().co.concepts
        for name in [self.concept, *(rule.concept for rule in self.concept_rules)]:
            if name not in known:
                raise PydanticCustomError(
                    "concept",
                    "unknown withholding concept '{name}'; the rules know {known}",
                    {"name": name, "known": ", ".join(sorted(known))},
                )
        return self
