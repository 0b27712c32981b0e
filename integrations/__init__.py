"""Callbacks that connect a training framework to a tunewire trial.

- `tunewire.integrations.lightning.LightningTrialCallback` for PyTorch Lightning
  (the `lightning` extra);
- `tunewire.integrations.transformers.TransformersTrialCallback` for Hugging Face
  `transformers.Trainer` (the `huggingface` extra).

Each takes a client `Trial` (from `TuningClient.worker_loop`) or the reporter a
`tunewire train --task module:function` task gets. This package imports neither
framework itself, so it loads without them.
"""
