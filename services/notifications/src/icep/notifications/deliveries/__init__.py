"""Deliveries: one event for one subscription, its attempts, the dispatcher that sends them and the
operators' delivery routes."""
