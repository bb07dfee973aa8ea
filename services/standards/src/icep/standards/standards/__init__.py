"""The standard aggregate: NATO standard editions, their lifecycle and the catalogue."""
