"""The status page at `/`: what the agent sees, decides and spends, in a browser (see `routes`)."""
