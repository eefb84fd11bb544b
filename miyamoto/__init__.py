"""Miyamoto: a fast, clusterable HTTP task queue.

`miyamoto.logic` is the sans-I/O core (pure state machines); `miyamoto.io` is the trio + h11 shell
that runs it as a daemon: `python -m miyamoto.io.node`.
"""

__version__ = "0.1.0"
