"""adstack: a self-hosted mobile advertising platform."""

__version__ = "0.1.0"
