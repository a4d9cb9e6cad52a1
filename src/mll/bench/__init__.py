"""The `mll-offline` benchmark: tasks, the registry of methods, running the grid, the report."""
