"""Hard-negative mining: encode a corpus, search it with faiss, keep negatives from a rank window.

inputs.py (BEIR folder or schema JSONL -> corpus + queries), encode.py (Lightning predict loop),
cache.py (corpus embeddings keyed by encoder fingerprint + corpus hash), search.py (faiss),
select.py (rank window, known positives, margins), pipeline.py (the whole run).
"""
