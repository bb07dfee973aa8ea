"""A plan's content and its stored document as JSON: what the plans table and every stored version hold."""

from __future__ import annotations

from datetime import date
from typing import Any

from icep.contracts import Releasability
from icep.plans.plans.model import (
    BottleneckInput,
    CapacityCommitment,
    Investment,
    Measure,
    MeasureKind,
    NationalPlan,
    Operator,
    PlanContent,
    RampStep,
)


def content_to_json(content: PlanContent) -> dict[str, Any]:
    return {
        "commitments": [
            {
                "key": c.key,
                "product": c.product,
                "capability_area": c.capability_area,
                "site": c.site,
                "site_country": c.site_country,
                "unit": c.unit,
                "baseline_per_month": c.baseline_per_month,
                "current_per_month": c.current_per_month,
                "target_per_month": c.target_per_month,
                "ramp": [{"on": s.on.isoformat(), "output_per_month": s.output_per_month} for s in c.ramp],
                "surge_per_month": c.surge_per_month,
                "surge_days": c.surge_days,
                "lead_time_days": c.lead_time_days,
                "operator": {"company": c.operator.company, "sme": c.operator.sme},
                "investment": (
                    None
                    if c.investment is None
                    else {"amount": c.investment.amount, "currency": c.investment.currency}
                ),
                "bottlenecks": [
                    {
                        "input": b.input,
                        "category": b.category,
                        "source_countries": list(b.source_countries),
                        "single_source": b.single_source,
                        "stock_cover_days": b.stock_cover_days,
                    }
                    for b in c.bottlenecks
                ],
            }
            for c in content.commitments
        ],
        "measures": [
            {
                "kind": m.kind.value,
                "description": m.description,
                "starts": m.starts.isoformat() if m.starts else None,
                "completes": m.completes.isoformat() if m.completes else None,
            }
            for m in content.measures
        ],
    }


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def content_from_json(data: dict[str, Any]) -> PlanContent:
    return PlanContent(
        commitments=tuple(
            CapacityCommitment(
                key=c["key"],
                product=c["product"],
                capability_area=c["capability_area"],
                site=c["site"],
                site_country=c["site_country"],
                unit=c["unit"],
                baseline_per_month=c["baseline_per_month"],
                current_per_month=c["current_per_month"],
                target_per_month=c["target_per_month"],
                ramp=tuple(RampStep(date.fromisoformat(s["on"]), s["output_per_month"]) for s in c["ramp"]),
                surge_per_month=c["surge_per_month"],
                surge_days=c["surge_days"],
                lead_time_days=c["lead_time_days"],
                operator=Operator(c["operator"]["company"], c["operator"]["sme"]),
                investment=(
                    None
                    if c["investment"] is None
                    else Investment(c["investment"]["amount"], c["investment"]["currency"])
                ),
                bottlenecks=tuple(
                    BottleneckInput(
                        input=b["input"],
                        category=b["category"],
                        source_countries=tuple(b["source_countries"]),
                        single_source=b["single_source"],
                        stock_cover_days=b["stock_cover_days"],
                    )
                    for b in c["bottlenecks"]
                ),
            )
            for c in data.get("commitments", [])
        ),
        measures=tuple(
            Measure(MeasureKind(m["kind"]), m["description"], _day(m["starts"]), _day(m["completes"]))
            for m in data.get("measures", [])
        ),
    )


def _release_json(r: Releasability | None) -> dict[str, Any] | None:
    return None if r is None else {"scope": r.scope.value, "nations": list(r.nations)}


def plan_document(plan: NationalPlan) -> dict[str, Any]:
    """The plan as the API shows it (JSON types): what every stored version holds."""
    return {
        "id": plan.id,
        "nation": plan.nation,
        "title": plan.title,
        "period_start": plan.period_start.isoformat(),
        "period_end": plan.period_end.isoformat(),
        "capability_areas": list(plan.capability_areas),
        "releasability": _release_json(plan.releasability),
        "capacity_releasability": _release_json(plan.capacity_releasability),
        "status": plan.status.value,
        "version": plan.version,
        "created_by": plan.created_by,
        "created_at": plan.created_at.isoformat(),
        "submitted_at": plan.submitted_at.isoformat() if plan.submitted_at else None,
        "returned_reasons": list(plan.returned_reasons),
        "superseded_by": plan.superseded_by,
        "content": content_to_json(plan.content),
    }
