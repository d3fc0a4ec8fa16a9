"""Impression, click and video tracking: signed tokens, click ids and the public tracking endpoints."""
