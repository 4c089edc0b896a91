"""Training: settings (config), the fit (fit), the run folder (runs) and starting from other
weights (transfer)."""
