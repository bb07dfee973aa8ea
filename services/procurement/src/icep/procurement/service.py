"""Use cases of the procurement service. The walking skeleton has none yet."""
