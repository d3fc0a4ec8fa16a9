"""Benchmarks behind `adstack bench ...`; each prints one JSON line last."""
