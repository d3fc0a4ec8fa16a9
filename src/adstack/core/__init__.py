"""Shared plumbing: settings, database, security, errors, time and money types."""
