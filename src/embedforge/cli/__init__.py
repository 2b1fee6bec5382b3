"""Console scripts, one module per job (train, generate, evaluate, mine, decontam, export, report,
sweep_offline): each parses its config, calls the library and prints; errors.py turns expected
failures into one line."""
