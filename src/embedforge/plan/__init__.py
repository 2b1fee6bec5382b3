"""Preflight: what a training run will cost (parameters, memory per GPU, FLOPs, hours) before it runs.

arch.py builds the model on the meta device (no weights) and counts parameters; memory.py is the
per-GPU memory model; cards.py the GPUs; plan.py ties them to a composed training config.
"""
