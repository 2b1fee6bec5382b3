"""Evaluation: MTEB adapter, local tasks, instructions, passkey probe, in-training callback."""
