"""Suppliers and their screening against hostile-influence lists (restricted countries and parties)."""
