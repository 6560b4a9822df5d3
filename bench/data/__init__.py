"""Datasets as [0, 1] tensors with their facts (``info``), loaders (``loaders``) and augmentations (``augment``).
Importing the package registers the built-in datasets, as ``methods`` registers the built-in methods."""

from bench.data import loaders  # noqa: F401  (registration side effects)
