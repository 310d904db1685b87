"""Policies: the YAML an operator edits (and the EmpireConfig `spec`), validated once into frozen models."""
