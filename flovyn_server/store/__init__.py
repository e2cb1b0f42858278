"""Persistence behind one interface: SQLite (embedded default) and PostgreSQL."""

from flovyn_server.store.base import Row, Store, Tx, open_store

__all__ = ["Row", "Store", "Tx", "open_store"]
