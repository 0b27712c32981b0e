"""The tunewire trainer worker: trains PyTorch networks from suggested hyperparameters."""
