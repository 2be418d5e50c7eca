"""The contracts between the parts: every message on every topic, the topic registry, addresses.

Nothing here does I/O; every other package depends on this one and on nothing else in common.
"""
