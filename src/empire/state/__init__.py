"""State: the SQL database (SQLite default, PostgreSQL in production), its records and an in-memory twin."""

from empire.state.database import Database
from empire.state.memory import MemoryStateStore
from empire.state.records import ActionRecord, ActionState, AuditRecord, DecisionRecord, ModelRecord
from empire.state.store import SqlStateStore

__all__ = [
    "ActionRecord",
    "ActionState",
    "AuditRecord",
    "Database",
    "DecisionRecord",
    "MemoryStateStore",
    "ModelRecord",
    "SqlStateStore",
]
