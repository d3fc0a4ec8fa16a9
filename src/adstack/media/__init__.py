"""Uploaded images and videos, checked from their content."""
