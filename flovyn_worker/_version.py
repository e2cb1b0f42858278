"""Version of the flovyn_worker SDK (sent on register)."""

__version__ = "0.1.0"
