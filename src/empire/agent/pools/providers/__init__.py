"""Provider adapters: a generic HTTP job API and a seeded simulated one, behind `JobProvider`."""
