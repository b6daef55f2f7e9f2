"""TFX Tuner's tuner_fn: a small keras-tuner random search over modules.model's space (model
family, learning rate, width, depth), each trial trained as long as the data size asks
(modules.trainer.training_plan, bounded by the Tuner's train_steps) with early stopping."""

from __future__ import annotations

import functools

import keras_tuner as kt
import tensorflow_transform as tft
from tfx import v1 as tfx

from modules import dataset_spec
from modules.model import build_keras_model, hyperparameter_space, tuner_objective
from modules.trainer import (
    EVAL_BATCH_SIZE,
    fits_in_cache,
    input_fn,
    label_scale,
    read_split,
    training_plan,
)

# The default dataset's objective (binary: validation AUC); tuner_objective(spec) in general.
OBJECTIVE = tuner_objective(dataset_spec.load())
DEFAULT_MAX_TRIALS = 4


def tuner_fn(fn_args: tfx.components.FnArgs) -> tfx.components.TunerFnResult:
    """Random search; the number of trials and the dataset spec come from the pipeline config
    via custom_config."""
    max_trials = int((fn_args.custom_config or {}).get("max_trials", DEFAULT_MAX_TRIALS))
    spec = dataset_spec.from_custom_config(fn_args.custom_config)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    train = read_split(fn_args.train_files, fn_args.data_accessor, tf_transform_output, spec)
    plan = training_plan(train.rows, fn_args.train_steps)
    tuner = kt.RandomSearch(
        functools.partial(
            build_keras_model, spec=spec, label_scale=label_scale(spec, train.labels)
        ),
        hyperparameters=hyperparameter_space(),
        objective=tuner_objective(spec),
        max_trials=max_trials,
        directory=fn_args.working_dir,
        project_name="taxi_tuning",
        seed=42,
    )
    cache = fits_in_cache(fn_args.train_files, spec=spec)
    return tfx.components.TunerFnResult(
        tuner=tuner,
        fit_kwargs={
            "x": input_fn(
                fn_args.train_files,
                fn_args.data_accessor,
                tf_transform_output,
                plan.batch_size,
                cache,
                spec,
            ),
            "validation_data": input_fn(
                fn_args.eval_files,
                fn_args.data_accessor,
                tf_transform_output,
                EVAL_BATCH_SIZE,
                cache,
                spec,
            ),
            "steps_per_epoch": plan.steps_per_epoch,
            "epochs": plan.epochs,
            "callbacks": [plan.early_stopping()],
            "validation_steps": fn_args.eval_steps,
            "verbose": 2,
        },
    )
