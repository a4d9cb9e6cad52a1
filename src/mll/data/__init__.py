"""Data: offline WordNet, the Semantic DAG, datasets and image URIs, splits and their validation."""
