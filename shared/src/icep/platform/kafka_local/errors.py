"""The errors the local Kafka tooling raises: one base class, so callers can catch them all,
and one subclass each for a broken setup and a broker that would not start.
"""

from __future__ import annotations


class KafkaLocalError(RuntimeError):
    """Base class of the errors raised by this module."""


class KafkaSetupError(KafkaLocalError):
    """Tools (java, mvn) or jars are missing, or a setup command failed."""


class KafkaStartError(KafkaLocalError):
    """The broker did not become ready (it died or timed out)."""
