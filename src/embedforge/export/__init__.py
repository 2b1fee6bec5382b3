"""Export a trained encoder as a sentence-transformers folder (embedforge-export; docs/export.md)."""
