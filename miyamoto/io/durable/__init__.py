"""The node's data directory: the lock, the SQLite store and its commits (docs/durability.md)."""
