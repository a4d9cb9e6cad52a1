"""The hub: model cards, loading experts safely, the registry of expert sources, training."""
