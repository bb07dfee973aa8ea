"""Interchangeability clearances (item for platform, for nations) and the "can fire" answer."""
