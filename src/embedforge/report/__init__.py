"""embedforge-report: the paper's Table 1 and Table 5 beside ours, from run records or W&B (docs/report.md)."""
