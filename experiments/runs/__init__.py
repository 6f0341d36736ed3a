"""The training runs: one config, one loop over a backend (manual, torch, or many stacked models)."""
