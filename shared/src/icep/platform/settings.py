"""Settings from the environment (pydantic-settings).

Each service subclasses `ServiceSettings` with its own prefix (`ICEP_PLANS_`, ...). A few settings are
platform-wide and read without the prefix: `KAFKA_BOOTSTRAP_SERVERS`, `ICEP_AUTH_*` and the standard
`OTEL_*` variables (read by OpenTelemetry itself).
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The management port's default distance from the API port.
MANAGEMENT_PORT_OFFSET = 1000


def _env(prefixed: str, *plain: str) -> AliasChoices:
    return AliasChoices(prefixed, *plain)


class ServiceSettings(BaseSettings):
    """What every service can be told. Subclasses set `service_name`, `port` and `env_prefix`."""

    model_config = SettingsConfigDict(env_prefix="ICEP_", extra="ignore", populate_by_name=True)

    #: The process's name: it names its topic (`icep.<name>.events`), consumer group, SQLite file and
    #: metrics. Set by each service's class; not meant to be changed.
    service_name: str = "service"
    #: The address the API port listens on (`0.0.0.0` in a container).
    host: str = "127.0.0.1"
    #: The API port: the service's `/v1` API, `/healthz` and `/readyz` (the gateway's: everything public).
    port: int = 8000
    #: The operators' port: /metrics, /healthz, /readyz and the service's own API docs, never served on the
    #: API port. Default: the API port + 1000 (gateway 9000, plans 9001, ...).
    management_port: int | None = Field(default=None, ge=1, le=65535)
    #: Where the management port listens; default: `host`.
    management_host: str | None = None
    #: SQLAlchemy URL; `postgresql://` and `sqlite:///` are accepted and given their async driver.
    #: Empty: `sqlite+aiosqlite:///<var_dir>/<service_name>.db`.
    database_url: str = ""
    #: Migrate the database on start (`make up`, tests, compose). False where a migrations Job does it
    #: with a DDL role (deploy/k8s): the service then only waits, up to `migration_wait_seconds`, until
    #: the schema is at the revision its code expects, and may run with a role that has DML rights only.
    migrate_on_start: bool = True
    #: With `migrate_on_start` off: how long the service waits at start for the schema to reach the
    #: revision its code expects before it gives up.
    migration_wait_seconds: float = Field(default=300.0, ge=0)
    #: The folder of everything a process keeps on disk by default: SQLite files, the gateway's signing
    #: keys, development secret keys, `icep up`'s logs.
    var_dir: str = Field(default="var", validation_alias=_env("ICEP_VAR_DIR"))

    #: The Kafka brokers (`host:port`, comma-separated). `icep up` starts a local broker unless it is set.
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS")
    )
    #: Prefix of every topic and consumer group (e.g. `staging.`), so several deployments (or test
    #: runs) can share one Kafka cluster without seeing each other's events.
    topic_namespace: str = Field(
        default="", validation_alias=_env("ICEP_TOPIC_NAMESPACE"), pattern=r"^([a-z0-9_-]+\.)?$"
    )
    #: Partitions of the topics a service creates at start (existing topics are left as they are).
    topic_partitions: int = Field(default=6, validation_alias=_env("ICEP_TOPIC_PARTITIONS"))
    #: Replication factor of the topics a service creates (3 on a production cluster).
    topic_replication_factor: int = Field(default=1, validation_alias=_env("ICEP_TOPIC_REPLICATION_FACTOR"))
    #: Topic config `min.insync.replicas` of the topics a service creates: how many replicas must have a
    #: record before an `acks=all` producer is answered. Default: 2 from replication factor 3 up (one
    #: broker may die without stopping writes or losing an acknowledged record), else 1.
    topic_min_insync_replicas: int | None = Field(
        default=None, ge=1, validation_alias=_env("ICEP_TOPIC_MIN_INSYNC_REPLICAS")
    )

    #: Run the outbox relay in this process (off only in tests that drive the relay themselves).
    outbox_relay_enabled: bool = True
    #: Rows per relay round: one read and one "mark sent" statement per round, so larger rounds cost
    #: fewer database round trips per event.
    outbox_batch_size: int = 1000
    #: How often the relay looks for rows that no wake-up announced (left by a crash, or another replica).
    outbox_poll_seconds: float = 1.0
    #: Sent outbox rows are kept this long (for an operator's look), then purged; unsent rows never are.
    outbox_retention_hours: float = Field(default=24.0, gt=0)
    #: Handled events' inbox rows are kept this long: it must be longer than the topics keep their records
    #: (`kafka_topic_retention_hours`), or a redelivered event would be handled a second time.
    inbox_retention_days: float = Field(default=14.0, gt=0)
    #: How long the deployment's topics keep records (Kafka's `retention.ms`; Kafka's default is 168 h).
    kafka_topic_retention_hours: float = Field(
        default=168.0, gt=0, validation_alias=_env("ICEP_KAFKA_TOPIC_RETENTION_HOURS")
    )
    #: How often the retention purge runs (inbox, outbox and the service's own tables).
    retention_purge_seconds: float = Field(default=3600.0, gt=0)
    #: Rows deleted per purge transaction: short transactions, no long locks.
    retention_batch_size: int = Field(default=1000, ge=1, le=100_000)
    #: How often the backlog and the age of the oldest unsent row are counted for the metrics, apart from
    #: the relay (which may be blocked by a broker outage); a commit also triggers a count.
    outbox_observe_seconds: float = Field(default=5.0, gt=0)
    #: How long the relay waits for the broker to acknowledge a send (or its producer to start) before it
    #: counts a failure, reports itself blocked and tries again in a later round.
    outbox_send_timeout_seconds: float = Field(default=10.0, gt=0)
    #: How often consumer lag (committed vs end offsets of the group's topics) is observed.
    consumer_lag_observe_seconds: float = Field(default=10.0, gt=0)
    #: How often the database and the broker are checked for `icep_dependency_up` and readiness details.
    dependency_observe_seconds: float = Field(default=5.0, gt=0)

    #: Shards the relay's (and a dispatcher's) work is cut into on PostgreSQL, each held by one live replica
    #: (`icep.platform.shards`); more shards than replicas you will run, so the work divides evenly.
    work_shards: int = Field(default=16, ge=1, le=1024)
    #: How often a replica looks at the live members and takes (or lets go of) its shards: a replica that
    #: died has its shards taken over after at most about this long.
    shard_rebalance_seconds: float = Field(default=1.0, gt=0)

    #: Run the service's Kafka consumer in this process (off only in tests that drive handlers themselves).
    consumer_enabled: bool = True
    #: The consumer group's session timeout: a member that sent no heartbeat this long (killed) is removed
    #: and its partitions handed to the others. The broker must allow it (`group.min.session.timeout.ms`,
    #: 6000 by Kafka's default; the platform's broker configs set 1000). The default is the shortest any
    #: stock broker accepts; `icep up`, the compose file and the tests, whose brokers allow 1000, set 3000.
    #: Platform-wide (`ICEP_CONSUMER_SESSION_TIMEOUT_MS`): it must suit the cluster's brokers.
    consumer_session_timeout_ms: int = Field(
        default=6000, ge=1000, validation_alias=_env("ICEP_CONSUMER_SESSION_TIMEOUT_MS")
    )
    #: How often the consumer heartbeats (a third of the session timeout or less).
    consumer_heartbeat_interval_ms: int = Field(
        default=2000, ge=100, validation_alias=_env("ICEP_CONSUMER_HEARTBEAT_INTERVAL_MS")
    )
    #: Kafka static membership (`group.instance.id`), e.g. the pod's stable name: a replica restarted
    #: within the session timeout gets its partitions back without a rebalance. Unset: dynamic membership
    #: (see docs/operations/replicas.md for what each does on kill and restart).
    consumer_group_instance_id: str | None = None
    #: Tries of a failing handler before its record is dead-lettered to `icep.dlq.<group>`.
    consumer_max_attempts: int = 5
    #: The wait before a failing handler's second try; it doubles with each further try.
    consumer_backoff_seconds: float = 0.2
    #: The longest wait between two tries of a failing handler.
    consumer_backoff_max_seconds: float = 5.0

    #: The token issuer (`iss`) every service accepts: the gateway's public URL, or an external provider's.
    auth_issuer: str = Field(default="http://127.0.0.1:8000", validation_alias=_env("ICEP_AUTH_ISSUER"))
    #: The audience (`aud`) a token must name.
    auth_audience: str = Field(default="icep", validation_alias=_env("ICEP_AUTH_AUDIENCE"))
    #: Where the services fetch the issuer's public signing keys (JWKS).
    auth_jwks_url: str = Field(
        default="http://127.0.0.1:8000/.well-known/jwks.json", validation_alias=_env("ICEP_AUTH_JWKS_URL")
    )
    #: How long fetched signing keys are trusted before the key set is fetched again: a key the issuer
    #: retired stops verifying after at most this long (an unknown kid is fetched at once anyway).
    auth_jwks_max_age_seconds: float = Field(
        default=300.0, gt=0, validation_alias=_env("ICEP_AUTH_JWKS_MAX_AGE_SECONDS")
    )
    #: The claim naming the caller's nation; a dotted path reaches into an object (`attributes.nation`).
    auth_nation_claim: str = Field(
        default="nation", min_length=1, validation_alias=_env("ICEP_AUTH_NATION_CLAIM")
    )

    #: How long a POST's `Idempotency-Key` and its stored answer are kept (a retry after that runs anew).
    idempotency_ttl_seconds: float = Field(
        default=86400.0, gt=0, validation_alias=_env("ICEP_IDEMPOTENCY_TTL_SECONDS")
    )
    #: How long a request holding a key may run before another request with the key may take it over
    #: (the first one is presumed crashed); longer than any request takes, shorter than a client waits.
    idempotency_lock_seconds: float = Field(
        default=60.0, gt=0, validation_alias=_env("ICEP_IDEMPOTENCY_LOCK_SECONDS")
    )
    #: How often expired keys are purged from the database.
    idempotency_purge_seconds: float = Field(
        default=300.0, gt=0, validation_alias=_env("ICEP_IDEMPOTENCY_PURGE_SECONDS")
    )

    #: Record changes and other nations' reads in the service's audit log (`icep.platform.audit`).
    audit_enabled: bool = Field(default=True, validation_alias=_env("ICEP_AUDIT_ENABLED"))
    #: Read entries wait in memory for the audit writer; beyond this many they are dropped (and counted).
    audit_queue_size: int = Field(default=10_000, gt=0, validation_alias=_env("ICEP_AUDIT_QUEUE_SIZE"))
    #: How often the audit writer writes the queued entries (one INSERT per batch).
    audit_flush_seconds: float = Field(default=0.5, gt=0, validation_alias=_env("ICEP_AUDIT_FLUSH_SECONDS"))
    #: Fernet keys sealing secrets at rest (stored idempotent answers; webhook signing secrets),
    #: comma-separated, newest first: the first seals, all open (`icep.platform.secrets`; `icep secrets
    #: new-key` makes one). Unset: a development key file under `var_dir`, with a warning.
    secret_keys: str = Field(default="", repr=False)
    #: Refuse to start without `secret_keys` (production).
    require_secret_keys: bool = Field(default=False, validation_alias=_env("ICEP_REQUIRE_SECRET_KEYS"))

    #: How often `icep_dead_letters_waiting` is counted again (it also moves at each dead letter).
    dead_letters_gauge_seconds: float = Field(
        default=30.0, gt=0, validation_alias=_env("ICEP_DEAD_LETTERS_GAUGE_SECONDS")
    )

    #: Level of the JSON logs (`DEBUG`, `INFO`, `WARNING`, `ERROR`).
    log_level: str = Field(default="INFO", validation_alias=_env("ICEP_LOG_LEVEL"))
    #: Comma-separated names of fault points that end the process (tests of crash recovery only).
    faults: str = Field(default="", validation_alias=_env("ICEP_FAULTS"))

    @model_validator(mode="after")
    def _defaults(self) -> ServiceSettings:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.var_dir}/{self.service_name}.db"
        if self.management_port is None:
            self.management_port = self.port + MANAGEMENT_PORT_OFFSET
        if self.management_host is None:
            self.management_host = self.host
        if self.inbox_retention_days * 24 <= self.kafka_topic_retention_hours:
            raise ValueError(
                f"the inbox retention ({self.inbox_retention_days} days) must be longer than the topics' "
                f"({self.kafka_topic_retention_hours} hours): a redelivered event would be handled twice"
            )
        if self.management_port == self.port or not 0 < self.management_port <= 65535:
            raise ValueError(
                f"the management port {self.management_port} is not a free port beside {self.port}"
            )
        return self

    @property
    def management_address(self) -> tuple[str, int]:
        """Where the management port listens (host, port), defaults applied."""
        assert self.management_host is not None and self.management_port is not None
        return self.management_host, self.management_port

    def topic_name(self, logical: str) -> str:
        """The topic a logical name such as `icep.plans.events` has in this deployment."""
        return f"{self.topic_namespace}{logical}"

    @property
    def topic(self) -> str:
        """The one topic this service publishes to."""
        return self.topic_name(f"icep.{self.service_name}.events")

    @property
    def consumer_group(self) -> str:
        return f"{self.topic_namespace}icep-{self.service_name}"

    @property
    def dead_letter_topic(self) -> str:
        return self.topic_name(f"icep.dlq.icep-{self.service_name}")
