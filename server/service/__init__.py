"""The service layer: each RPC is one unit of work that loads what a domain rule needs,
applies it and saves the result (studies.py, trials.py, suggest.py), awaited through
`TuningService` (tuning.py)."""
