"""The service's own schedule: conformance verifications expire on their date, each exactly once."""

from __future__ import annotations

import asyncio

from prometheus_client import Counter

from icep.platform.app import Runtime
from icep.standards.conformance import use_cases
from icep.standards.settings import StandardsSettings

EXPIRY_RUNS = Counter("icep_standards_expiry_runs", "Runs of the conformance expiry schedule", ["service"])
EXPIRED = Counter(
    "icep_standards_conformance_expired", "Conformance verifications expired by the schedule", ["service"]
)


async def expire_conformance(runtime: Runtime) -> None:
    """Runs at start (catching up on anything that fell due while the service was down), then on every
    interval. Supervised by the platform: a failed run is retried after a backoff."""
    settings = runtime.settings_as(StandardsSettings)
    assert runtime.uow is not None
    while True:
        EXPIRED.labels(settings.service_name).inc(await use_cases.expire_due_claims(runtime.uow))
        EXPIRY_RUNS.labels(settings.service_name).inc()
        await asyncio.sleep(settings.expiry_interval_seconds)
