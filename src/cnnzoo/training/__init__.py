"""Training: settings (config), the fit (fit), augmentation layers (augment), the run folder
(runs) and starting from other weights (transfer)."""
