"""Deterministic simulation of Miyamoto nodes: `python -m sim --help`.

The real node state machines run in one thread on a virtual clock, with a simulated network,
simulated webhook receivers and clients, and faults drawn from one seed; checkers name every
anomaly a queue can show (lost, unexpected, early, duplicated, cancelled, ...).
"""
