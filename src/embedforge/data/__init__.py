"""Training data: one Example schema, loaders, collation."""
