"""The project's one console script, `mlops`: serve, predict, lineage, ..."""
