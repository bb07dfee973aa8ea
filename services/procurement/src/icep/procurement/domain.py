"""The procurement domain rules (plain Python). The walking skeleton has none yet."""
