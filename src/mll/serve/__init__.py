"""Solved tasks kept and served: solution folders, the MLflow pyfunc model, the registry."""
