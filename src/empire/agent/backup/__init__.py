"""Scheduled backups of the state database: an area of the daemon (see `empire.agent.backup.setup`)."""
