"""Using trained models on images and datasets: prediction (predict), evaluation with
ensembles and test-time views (evaluate, tta)."""
