"""The agent: observe -> decide -> stabilize -> execute -> record, and the adapters it acts through."""
