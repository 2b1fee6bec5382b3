"""The embedding model: backbone (HF AutoModel) + optional LoRA + pooling + L2 normalisation."""
