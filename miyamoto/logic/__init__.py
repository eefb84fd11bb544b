"""The sans-I/O core of Miyamoto.

Everything that decides anything lives here, as pure state machines: they are fed events together
with the current time in integer milliseconds and return a list of actions for the shell to carry
out. Nothing here imports trio, h11, socket, time, os or the global `random`; randomness comes in as
an injected `random.Random`.
"""
