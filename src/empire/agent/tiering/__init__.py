"""Storage tiering: keep content on the cheapest tier that its use allows, and never lose any of it.

inventory.py   content objects in the state DB; access (decayed) and revenue ingestion
planner.py     PURE: the tier an object belongs in and whether moving it pays over the horizon
selection.py   the same arithmetic as one SQL query over the whole inventory
backends/      StorageBackend adapters: local filesystem (one root per tier), S3 (storage classes)
mover.py       crash-safe moves (copy, fsync, verify, switch, delete) journaled in `moves`
executor.py    the Retier executor and the periodic sweep for the agent loop
api.py         the authenticated HTTP ingestion endpoint
"""
