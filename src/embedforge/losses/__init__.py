"""Contrastive losses, each a pure function of embeddings."""
