"""Creatives: format specs, materials, review, preview and dynamic-creative combinations."""
