"""TFX Tuner's tuner_fn: a small keras-tuner random search over modules.model's space (model
family, learning rate, width, depth), each trial trained as long as the data size asks
(modules.trainer.training_plan, bounded by the Tuner's train_steps) with early stopping.

A gradient-boosted-trees trial (when custom_config's model_families include them) does not fit
on the Keras families' repeated batches: it trains on one pass of the training split and is
scored on the eval split's rows with the objective's metric (AUC, accuracy or, for regression's
val_loss, the mean squared error that is the Keras families' loss)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import keras_tuner as kt
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx.components.tuner.component import TunerFnResult

from modules import baselines, dataset_spec
from modules.families import GRADIENT_BOOSTED_TREES, configured_families
from modules.model import (
    build_keras_model,
    hyperparameter_space,
    model_family,
    tuner_objective,
)
from modules.trainer import (
    EVAL_BATCH_SIZE,
    READ_BATCH_SIZE,
    fit_gradient_boosted_trees,
    fits_in_cache,
    input_fn,
    label_scale,
    one_pass,
    read_split,
    train_split_and_plan,
)

# The default dataset's objective (binary: validation AUC); tuner_objective(spec) in general.
OBJECTIVE = tuner_objective(dataset_spec.load())
DEFAULT_MAX_TRIALS = 4


class FamilySearch(kt.RandomSearch):
    """Random search whose gradient-boosted-trees trials are scored by `score_forest` (the
    objective's value of a trial's hyperparameters); every other trial is a Keras fit."""

    def __init__(self, *args, score_forest: Callable[[kt.HyperParameters], float], **kwargs):
        super().__init__(*args, **kwargs)
        self._score_forest = score_forest

    def run_trial(self, trial, *args, **kwargs):
        if model_family(trial.hyperparameters) == GRADIENT_BOOSTED_TREES:
            return {self.oracle.objective.name: self._score_forest(trial.hyperparameters)}
        return super().run_trial(trial, *args, **kwargs)


def tuner_fn(fn_args: FnArgs) -> TunerFnResult:
    """Random search; the number of trials and the dataset spec come from the pipeline config
    via custom_config."""
    max_trials = int((fn_args.custom_config or {}).get("max_trials", DEFAULT_MAX_TRIALS))
    spec = dataset_spec.from_custom_config(fn_args.custom_config)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    train, plan = train_split_and_plan(fn_args, tf_transform_output, spec)
    families = configured_families(fn_args.custom_config)
    build = functools.partial(
        build_keras_model, spec=spec, label_scale=label_scale(spec, train.labels)
    )

    def score_forest(hparams: kt.HyperParameters) -> float:
        model = fit_gradient_boosted_trees(
            build(hparams),
            one_pass(fn_args.train_files, fn_args.data_accessor, tf_transform_output, spec),
            spec,
        )
        held_out = read_split(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, spec)
        predictions = model.predict(held_out.features, batch_size=READ_BATCH_SIZE, verbose=0)
        return baselines.metric_value(spec, held_out.labels, predictions)

    tuner = FamilySearch(
        build,
        score_forest=score_forest,
        hyperparameters=hyperparameter_space(families),
        objective=tuner_objective(spec),
        max_trials=max_trials,
        directory=fn_args.working_dir,
        project_name="taxi_tuning",
        seed=42,
    )
    cache = fits_in_cache(fn_args.train_files, spec=spec)
    return TunerFnResult(
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
