"""Contamination check: training records against evaluation sets.

normalize.py (NFKC, case, punctuation, whitespace), ngrams.py (hashed word n-grams and the eval
index), eval_side.py (items of local task folders or MTEB tasks), train_side.py (streamed records,
every bad line counted), check.py (the run), report.py (console table, JSON, cleaned copy).
"""
