"""Flovyn server: durable workflow orchestration over REST, SSE and a worker protocol."""

__version__ = "0.1.0"
