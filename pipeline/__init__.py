"""The pipeline definition: a typed config and the one create_pipeline(config)."""
