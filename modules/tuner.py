"""TFX Tuner's tuner_fn: a small keras-tuner random search over modules.model's space."""

from __future__ import annotations

import keras_tuner as kt
import tensorflow_transform as tft
from tfx import v1 as tfx

from modules.model import build_keras_model, hyperparameter_space
from modules.trainer import BATCH_SIZE, EVAL_BATCH_SIZE, fits_in_cache, input_fn

OBJECTIVE = kt.Objective("val_auc", direction="max")
DEFAULT_MAX_TRIALS = 4


def tuner_fn(fn_args: tfx.components.FnArgs) -> tfx.components.TunerFnResult:
    """Random search; the number of trials comes from the pipeline config via custom_config."""
    max_trials = int((fn_args.custom_config or {}).get("max_trials", DEFAULT_MAX_TRIALS))
    tuner = kt.RandomSearch(
        build_keras_model,
        hyperparameters=hyperparameter_space(),
        objective=OBJECTIVE,
        max_trials=max_trials,
        directory=fn_args.working_dir,
        project_name="taxi_tuning",
        seed=42,
    )
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    cache = fits_in_cache(fn_args.train_files)
    return tfx.components.TunerFnResult(
        tuner=tuner,
        fit_kwargs={
            "x": input_fn(
                fn_args.train_files, fn_args.data_accessor, tf_transform_output, BATCH_SIZE, cache
            ),
            "validation_data": input_fn(
                fn_args.eval_files,
                fn_args.data_accessor,
                tf_transform_output,
                EVAL_BATCH_SIZE,
                cache,
            ),
            "steps_per_epoch": fn_args.train_steps,
            "validation_steps": fn_args.eval_steps,
            "verbose": 2,
        },
    )
