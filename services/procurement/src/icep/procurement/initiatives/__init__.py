"""Multinational procurement initiatives: participation, tender, bids, awards, contracts."""
