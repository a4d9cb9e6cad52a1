"""Model labels: computing them, the label store (format, read/write, lock, index) and the scores."""
