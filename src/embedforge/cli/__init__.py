"""Hydra entry points, one per job (train, generate, evaluate, export)."""
