"""`empire run --simulate`: the daemon in a simulated world (see `run`)."""
