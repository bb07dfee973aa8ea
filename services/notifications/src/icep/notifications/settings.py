from __future__ import annotations

import contextlib
import ipaddress

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import SettingsConfigDict

from icep.notifications.deliveries.egress import AllowedHosts
from icep.platform.settings import ServiceSettings


class NotificationsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ICEP_NOTIFICATIONS_", extra="ignore")

    service_name: str = "notifications"
    port: int = 8004
    #: Seconds to wait before each retry after a failed delivery; when they are used up it failed.
    retry_schedule_seconds: list[float] = Field(
        default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]
    )
    #: How long one webhook request may take (connect to answer) before the attempt counts as failed.
    request_timeout_seconds: float = 10.0
    #: How much of a receiver's answer is read and kept (the rest is ignored).
    max_response_bytes: int = 4096
    #: Webhook requests in flight at once (one per subscription and subject at most, so per-subject order
    #: holds): enough that slow receivers do not hold every slot, and that one receiver's round trips do
    #: not bound the rate (20 kept a local receiver near 500/s, 64 about 800/s).
    dispatch_concurrency: int = Field(default=64, ge=1)
    #: How often the dispatcher looks for deliveries that fell due (a new delivery wakes it at once).
    dispatch_poll_seconds: float = 1.0
    #: How often pending deliveries and subscriptions are counted for the metrics.
    webhook_observe_seconds: float = Field(default=5.0, gt=0)
    #: After a secret is rotated the previous one still signs (alongside the new one) this long.
    secret_grace_seconds: float = Field(default=24 * 3600.0, ge=0)
    #: Development only: let endpoints be http:// on loopback addresses (local receivers, tests).
    allow_loopback_endpoints: bool = False
    #: A subscription whose every attempt failed for this long is disabled (its owner is told by event).
    disable_after_failing_seconds: float = Field(default=5 * 24 * 3600.0, gt=0)
    #: How many events one `replay` may send again at most (a later `since` fetches the rest).
    max_replay_events: int = Field(default=10_000, ge=1)
    #: Development only: host name -> IP address, consulted before DNS when the dispatcher connects (like
    #: /etc/hosts), so tests can point a name at a local receiver. The address is checked like any other.
    static_hosts: dict[str, str] = Field(default_factory=dict)
    #: Where webhooks may go at all (air-gapped or allow-listed deployments): unset, any host whose
    #: addresses are public; a JSON list, only the host names (`hooks.partner.example`), suffix patterns
    #: (`*.mod.example`) and IP addresses it names, and the `static_hosts` names (`[]`: those alone).
    #: Another host is refused when subscribing (422) and before any DNS look-up when connecting.
    allowed_hosts: list[str] | None = None
    #: The event log (the catch-up feed and the stream) keeps each event this long (days); a cursor from
    #: before that is 410 Gone. `ICEP_NOTIFICATIONS_FEED_RETENTION_DAYS` is the older name.
    feed_retention_days: float = Field(
        default=30.0,
        gt=0,
        validation_alias=AliasChoices(
            "feed_retention_days",
            "ICEP_NOTIFICATIONS_EVENT_LOG_RETENTION_DAYS",
            "ICEP_NOTIFICATIONS_FEED_RETENTION_DAYS",
        ),
    )
    #: Finished webhook deliveries (delivered, or failed for good) and their attempts are kept this long
    #: after they finished (days); pending ones are never purged.
    delivery_retention_days: float = Field(default=30.0, gt=0)
    #: How often the retention purge runs (event log, deliveries, inbox, outbox).
    #: `ICEP_NOTIFICATIONS_FEED_PURGE_INTERVAL_SECONDS` is the older name.
    retention_purge_seconds: float = Field(
        default=3600.0,
        gt=0,
        validation_alias=AliasChoices(
            "retention_purge_seconds",
            "ICEP_NOTIFICATIONS_RETENTION_PURGE_SECONDS",
            "ICEP_NOTIFICATIONS_FEED_PURGE_INTERVAL_SECONDS",
        ),
    )
    #: How many logged events one feed page (or stream read) looks at, at most, to fill itself with
    #: events that pass the caller's filters; the page says how far it got.
    feed_scan_limit: int = Field(default=5000, ge=1)
    #: Seconds between heartbeat comments on a stream that has nothing to send.
    stream_heartbeat_seconds: float = Field(default=15.0, gt=0)
    #: How often streams look for events another replica logged (this replica's commits wake them at once).
    stream_poll_seconds: float = Field(default=1.0, gt=0)

    @field_validator("allowed_hosts")
    @classmethod
    def _known_patterns(cls, value: list[str] | None) -> list[str] | None:
        AllowedHosts.of(value)  # a pattern that is not one fails at start, not at the first webhook
        return value

    def egress_allowed(self) -> AllowedHosts:
        """The hosts webhooks may go to (`allowed_hosts` with the `static_hosts` names)."""
        return AllowedHosts.of(self.allowed_hosts, self.static_hosts.keys())

    def loopback_names(self) -> frozenset[str]:
        """Names `static_hosts` points at loopback addresses: with `allow_loopback_endpoints` they are
        local endpoints like `localhost` (http allowed)."""
        found = set()
        for name, address in self.static_hosts.items():
            with contextlib.suppress(ValueError):
                if ipaddress.ip_address(address).is_loopback:
                    found.add(name.rstrip(".").lower())
        return frozenset(found)
