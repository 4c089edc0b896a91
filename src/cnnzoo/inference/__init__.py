"""Using trained models: safe loading (modelio), scores (metrics), prediction (predict),
evaluation with ensembles and test-time views (evaluate, tta)."""
