"""Solving a task: matching names, CHCO selection, reuse, adaptation, the patch, plan and predict."""
