"""Conformance claims of products to standard editions, and their expiry schedule."""
