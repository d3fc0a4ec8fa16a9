"""Advertised apps: measurement-partner settings, attribution windows and event-name mappings."""
