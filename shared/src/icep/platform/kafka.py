"""Kafka clients for the platform: topics at start, an idempotent producer, and a reachability check."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from icep.platform.aio import within
from icep.platform.logs import kafka_client

log = logging.getLogger("icep.kafka")


def dlq_topic(group: str) -> str:
    return f"icep.dlq.{group}"


def new_producer(bootstrap: str, client_id: str, *, max_batch_size: int = 16384) -> AIOKafkaProducer:
    """An idempotent producer: acks from all in-sync replicas, no duplicates from its own retries. No
    linger: the relay hands over a round's rows at once and the producer batches what gathers while a
    request is in flight, so waiting 2 ms more only added latency to every round (and a lone DLQ send)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=0,
        request_timeout_ms=15000,
        retry_backoff_ms=200,
        max_batch_size=max_batch_size,
    )


async def start_with_retry(client: AIOKafkaProducer | AIOKafkaAdminClient, what: str) -> None:
    """Start a client, waiting (with capped backoff) for the broker to become reachable.

    The tasks the client starts carry `what` as their Kafka client name, so a broker outage is logged once
    per client (`icep.platform.logs.KafkaOutageFilter`)."""
    token = kafka_client.set(what)
    try:
        async for attempt in AsyncRetrying(
            wait=wait_exponential(multiplier=0.2, max=5),
            retry=retry_if_exception_type(Exception),
            reraise=True,
        ):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    log.info("retrying %s start (attempt %d)", what, attempt.retry_state.attempt_number)
                await client.start()
    finally:
        kafka_client.reset(token)


def min_insync_for(replication: int) -> int:
    """The usual `min.insync.replicas` for a replication factor: 2 from 3 replicas up (a write survives one
    broker's loss and one broker may be down without stopping writes), 1 below (a single broker down must
    not stop writes on a 2-replica topic)."""
    return 2 if replication >= 3 else 1


async def ensure_topics(
    bootstrap: str,
    topics: Iterable[str],
    partitions: int,
    replication: int,
    *,
    min_insync_replicas: int | None = None,
) -> None:
    """Create missing topics; existing ones are left as they are.

    Replicated topics (factor > 1) are created with `min.insync.replicas` (default `min_insync_for`) as
    their own config, so the guarantee does not depend on a broker default."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await start_with_retry(admin, "kafka admin")
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in dict.fromkeys(topics) if t not in existing]
        configs: dict[str, str] = {}
        if replication > 1:
            configs["min.insync.replicas"] = str(min_insync_replicas or min_insync_for(replication))
        if missing:
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            t,
                            num_partitions=partitions,
                            replication_factor=replication,
                            topic_configs=configs,
                        )
                        for t in missing
                    ]
                )
                log.info("created topics %s", missing)
            except TopicAlreadyExistsError:
                pass  # another replica won the race
    finally:
        await admin.close()


async def kafka_reachable(bootstrap: str, timeout: float = 2.0) -> bool:
    """True when some bootstrap broker accepts a TCP connection in time."""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            _reader, writer = await within(timeout, asyncio.open_connection(host, int(port)))
        except (OSError, TimeoutError, ValueError):
            continue
        writer.close()
        return True
    return False
