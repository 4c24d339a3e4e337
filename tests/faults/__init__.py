"""Fault-injection tests: crash states (page-loss model), I/O errors, a full disk.

``make test`` runs them on a small budget; ``make crash`` (which sets
``SYNADB_CRASH_BUDGET=full``) explores many more crash states and fault sites.
"""
