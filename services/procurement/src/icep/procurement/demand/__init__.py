"""Pooled demand: nations' standing demand signals, the demand picture, and demand against capacity."""
