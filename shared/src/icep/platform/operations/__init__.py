"""Operators' tools for a consuming service: its dead letters (list, show, redrive, purge) and
reprocessing its consumer group from an offset or a time. The `icep` CLI (`operations.cli`) and the
operator-role API routes (`operations.api`) are two thin faces of the same functions here.
"""
