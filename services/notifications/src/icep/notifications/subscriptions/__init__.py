"""Subscriptions: a client's webhook subscription, its rules, storage, use cases and routes."""
