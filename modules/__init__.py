"""User code that TFX loads by module_file: features, preprocessing_fn, model, run_fn, tuner_fn."""
