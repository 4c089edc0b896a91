"""Shared test set-up: cnnzoo chooses the Keras backend before any test imports keras."""

import cnnzoo  # noqa: F401  (must precede `import keras` in test modules)
