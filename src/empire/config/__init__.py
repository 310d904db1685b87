"""Settings: frozen, typed, defaulted; from EMPIRE_* environment variables and an optional file."""
