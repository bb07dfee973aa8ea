"""icep-client: a typed async Python client for the ICEP partner API.

async with IcepClient("https://icep.example", "deu-planner", secret) as icep:
    plan = await icep.plans.create(title=..., period_start=..., period_end=...)
    plan = await icep.plans.submit(plan)  # If-Match: the ETag of the plan as read
"""

from icep_client.auth import ClientCredentials
from icep_client.client import IcepClient
from icep_client.errors import (
    Conflict,
    Forbidden,
    IcepError,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    ProblemError,
    RateLimited,
    TokenError,
    Unauthorized,
    Unprocessable,
)
from icep_client.models import (
    AuditEntry,
    Clearance,
    ConformanceClaim,
    DeadLetter,
    DeadLetterSummary,
    Delivery,
    DemandSignal,
    Event,
    FeedEvent,
    FeedPage,
    Initiative,
    Interoperability,
    Plan,
    Standard,
    StandardResponse,
    Subscription,
    SubscriptionCreated,
    SummaryLine,
    Supplier,
)
from icep_client.retrying import RetryPolicy
from icep_client.webhooks import InvalidWebhook, WebhookReceiver, verify_webhook

__all__ = [
    "AuditEntry",
    "Clearance",
    "ClientCredentials",
    "Conflict",
    "ConformanceClaim",
    "DeadLetter",
    "DeadLetterSummary",
    "Delivery",
    "DemandSignal",
    "Event",
    "FeedEvent",
    "FeedPage",
    "Forbidden",
    "IcepClient",
    "IcepError",
    "Initiative",
    "Interoperability",
    "InvalidWebhook",
    "NotFound",
    "Plan",
    "PreconditionFailed",
    "PreconditionRequired",
    "ProblemError",
    "RateLimited",
    "RetryPolicy",
    "Standard",
    "StandardResponse",
    "Subscription",
    "SubscriptionCreated",
    "SummaryLine",
    "Supplier",
    "TokenError",
    "Unauthorized",
    "Unprocessable",
    "WebhookReceiver",
    "verify_webhook",
]
