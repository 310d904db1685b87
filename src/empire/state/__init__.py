"""State: the SQL database (SQLite default, PostgreSQL in production), its records and an in-memory twin."""
