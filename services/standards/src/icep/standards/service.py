"""Use cases of the standards service. The walking skeleton has none yet."""
