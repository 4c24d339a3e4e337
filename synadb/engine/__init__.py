"""The storage engine: file format, log, index, locking and compaction.

Internal: nothing here is re-exported from :mod:`synadb`, and nothing here
knows about ML frameworks.
"""
