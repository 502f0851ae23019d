"""The `grid` stage: `spec.py` (parameters, no torch) and `run.py` (the worker side)."""
