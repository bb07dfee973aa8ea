"""What an award may credit a supplier with, in plain Python: its screening and, per product, the standard
editions that product holds verified, unexpired conformance with (claims every reader may read)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from icep.contracts import Releasability
from icep.platform.domain import invalid
from icep.procurement.initiatives.parts import AwardRefused, RequiredStandard
from icep.procurement.read_models.known import KnownConformance, KnownStandard
from icep.procurement.rules import (
    readers_missing,
)
from icep.procurement.suppliers.model import (
    Screening,
    Supplier,
    name_key,
)


@dataclass(frozen=True)
class SupplierStanding:
    """What an award needs to know of a supplier: its screening and its products' verified conformance."""

    supplier: Supplier
    #: Per product code of the supplier: the standard editions (number, edition) that product holds
    #: verified, unexpired conformance with. One product must hold every required edition on its own.
    verified: Mapping[str, frozenset[tuple[str, int]]]

    def missing(
        self, required: Sequence[RequiredStandard], product_code: str | None = None
    ) -> tuple[str | None, list[RequiredStandard]]:
        """The product that comes closest to holding every required edition (`product_code` if given,
        else the supplier's product missing the fewest, the first of them on a tie), and the editions it
        is missing; (None, all required) when the supplier has no product."""
        codes = [product_code] if product_code is not None else list(self.supplier.products)
        best: tuple[str | None, list[RequiredStandard]] = (None, list(required))
        for code in codes:
            held = self.verified.get(code, frozenset())
            lacking = [s for s in required if (s.number, s.edition) not in held]
            if best[0] is None or len(lacking) < len(best[1]):
                best = (code, lacking)
        return best

    def check_awardable(
        self, required: Sequence[RequiredStandard], product_code: str | None, location: str
    ) -> None:
        """An award to the supplier, of `product_code` (None: of one of its products), is refused, with the
        reason, when the supplier is not clear or cleared in screening, or the product holds no verified
        conformance with an edition in `required`. `location`: the award's field in the request."""
        supplier = self.supplier
        if product_code is not None and product_code not in supplier.products:
            raise invalid(f"{location}.product_code", f"{product_code} is not a product of {supplier.name}")
        if supplier.screening not in (Screening.CLEAR, Screening.CLEARED):
            raise AwardRefused(
                f"{supplier.name} is {supplier.screening.value.replace('_', ' ')} in supply-chain"
                " screening: only a clear or cleared supplier may be awarded",
                supplier_id=supplier.id,
                screening=supplier.screening.value,
            )
        product, lacking = self.missing(required, product_code)
        if lacking:
            missing = [s.label for s in lacking]
            if product is None:
                which = f"{supplier.name} has no product on record: none"
            elif product_code is not None or len(supplier.products) == 1:
                which = f"{supplier.name}'s product {product}"
            else:
                which = (
                    f"no single product of {supplier.name} holds every required edition: the closest,"
                    f" {product},"
                )
            raise AwardRefused(
                f"{which} holds no verified conformance with {', '.join(missing)}, which this initiative"
                " requires",
                supplier_id=supplier.id,
                product_code=product,
                missing_standards=missing,
            )


def names_product_of(claim: KnownConformance, supplier: Supplier) -> bool:
    """The claim is for one of the supplier's products: its code is the supplier's and its manufacturer is
    the supplier, by name or organisation id (compared as screening compares names). A claim for the same
    code by another manufacturer is another product."""
    if claim.product_code not in supplier.products or not claim.manufacturer.strip():
        return False
    return name_key(claim.manufacturer) in {name_key(supplier.name), name_key(supplier.organisation_id)}


def usable_claims(
    supplier: Supplier, claims: Iterable[KnownConformance], audience: Releasability
) -> list[KnownConformance]:
    """The claims an award to `supplier` may rest on, for a decision released as `audience` (the
    initiative): those naming the supplier's product that every reader of the decision may read. A claim
    some reader may not see is left out exactly as if it did not exist, so a refusal reads the same
    whether such a claim exists or none does (no oracle on what others hold)."""
    return [
        c
        for c in claims
        if c.releasability is not None
        and not readers_missing(c.releasability, audience)
        and names_product_of(c, supplier)
    ]


def supplier_standing(
    supplier: Supplier,
    claims: Iterable[KnownConformance],
    standards: Mapping[str, KnownStandard],
    on: date,
    audience: Releasability,
) -> SupplierStanding:
    """What an award released as `audience` may credit the supplier with: per product, the editions held
    by verified, unexpired claims that name that product and that every reader of the award may read."""
    usable = usable_claims(supplier, claims, audience)
    return SupplierStanding(supplier, verified_editions(supplier.products, usable, standards, on))


def verified_editions(
    products: Iterable[str],
    claims: Iterable[KnownConformance],
    standards: Mapping[str, KnownStandard],
    on: date,
) -> dict[str, frozenset[tuple[str, int]]]:
    """Per product code of `products`: the standard editions (number, edition) that product holds
    verified, unexpired conformance with (what one product holds is never credited to another)."""
    out: dict[str, set[tuple[str, int]]] = {p: set() for p in products}
    for c in claims:
        if c.product_code not in out or c.status != "verified":
            continue
        if c.expires_on is not None and c.expires_on <= on:
            continue
        s = standards.get(c.standard_id)
        if s is not None:
            out[c.product_code].add((s.number, s.edition))
    return {p: frozenset(held) for p, held in out.items()}
