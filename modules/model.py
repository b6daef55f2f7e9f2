"""The Keras wide-and-deep model and the hyperparameter space the Tuner searches.

Inputs come from the dataset spec's feature roles; the head, loss and metrics from its task:
binary (sigmoid, cross-entropy, accuracy + AUC), multiclass (softmax over the classes, sparse
categorical cross-entropy and accuracy) or regression (linear, mean squared error, MAE).

Uses tf_keras (Keras 2) explicitly: TFT and TFMA 1.16 only understand Keras 2 models, while
TensorFlow 2.16's default `tf.keras` is Keras 3.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

import keras_tuner as kt
import numpy as np
import tensorflow as tf
import tf_keras as keras

from modules import autograph_rules, dataset_spec
from modules.dataset_spec import BINARY, MULTICLASS, REGRESSION, DatasetSpec, transformed_name
from modules.families import (
    FAMILIES,
    GRADIENT_BOOSTED_TREES,
    LINEAR,
    WIDE_AND_DEEP,
    check_families,
)

# Keras's own training code is traced without AutoGraph conversion (most of each trial's time).
autograph_rules.skip_library_internals()

LEARNING_RATES: list[float] = [1e-3, 3e-3, 1e-2]
HIDDEN_UNITS: list[int] = [32, 64, 128]
MAX_HIDDEN_LAYERS: int = 3
# Model families (modules/families.py): a linear model on the transformed features (one-hot
# ids, z-scores), the wide-and-deep network, and gradient-boosted trees through TensorFlow
# Decision Forests (opt-in; TF-DF is imported only when that family is built). The linear family
# is also what the run's linear baseline is (modules/baselines.py fits it in closed form or by a
# short full-data fit).
# The trees' depths the Tuner tries (only when the family is searched); 6 is TF-DF's default.
TREE_DEPTHS: list[int] = [4, 6]
MAX_TREES = 300
# Training steps per tf.function call: this small network's step is cheaper than Keras's
# per-step Python overhead, so running many steps per call is most of the training speed-up.
STEPS_PER_EXECUTION: int = 50
# The model's output: class probabilities (binary: [n, 1], multiclass: [n, classes]) or, for
# regression, the predicted value [n, 1].
PROBABILITIES = "probabilities"
PREDICTIONS = "predictions"


def output_name(spec: DatasetSpec) -> str:
    return PROBABILITIES if spec.is_classification else PREDICTIONS


def tuner_objective(spec: DatasetSpec) -> kt.Objective:
    """What the Tuner maximises (minimises): AUC, accuracy or the validation loss."""
    if spec.task == BINARY:
        return kt.Objective("val_auc", direction="max")
    if spec.task == MULTICLASS:
        return kt.Objective("val_accuracy", direction="max")
    return kt.Objective("val_loss", direction="min")


def hyperparameter_space(families: tuple[str, ...] = FAMILIES) -> kt.HyperParameters:
    """The search space: the model family, learning rate, width of the first hidden layer and
    depth (the last two only shape the wide-and-deep family), and the trees' depth when
    gradient-boosted trees are searched (the default space is unchanged without them, so the
    default search samples the same trials)."""
    families = check_families(families) or FAMILIES
    hp = kt.HyperParameters()
    default = WIDE_AND_DEEP if WIDE_AND_DEEP in families else families[0]
    hp.Choice("model_family", list(families), default=default)
    hp.Choice("learning_rate", LEARNING_RATES, default=3e-3)
    hp.Choice("first_hidden_units", HIDDEN_UNITS, default=64)
    hp.Int("num_hidden_layers", 1, MAX_HIDDEN_LAYERS, default=2)
    if GRADIENT_BOOSTED_TREES in families:
        hp.Choice("max_depth", TREE_DEPTHS, default=6)
    return hp


def for_families(hparams: kt.HyperParameters, families: tuple[str, ...]) -> kt.HyperParameters:
    """`hparams` (e.g. the committed best hyperparameters) restricted to `families`: the values
    the space of `families` shares with them, and the first of `families` when theirs is not
    one of them (`--skip-tuning --model-family gradient_boosted_trees` trains trees)."""
    hp = hyperparameter_space(families)
    hp.values.update({k: v for k, v in hparams.values.items() if k in hp.values})
    if model_family(hp) not in families:
        hp.values["model_family"] = families[0]
    return hp


def model_family(hparams: kt.HyperParameters) -> str:
    """The family a set of hyperparameters asks for (wide-and-deep for sets saved before the
    family was searched)."""
    return str(hparams.values.get("model_family", WIDE_AND_DEEP))


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[io.StringIO]:
    """Capture what C++ code writes to stdout/stderr (TF-DF's learner logs each tree and
    warning there, past Python's logging): into the yielded buffer, which callers log at debug
    level, so a run's terminal shows the pipeline's own progress only."""
    import wurlitzer

    buffer = io.StringIO()
    with wurlitzer.pipes(stdout=buffer, stderr=wurlitzer.STDOUT):
        yield buffer


def build_gradient_boosted_trees(spec: DatasetSpec, hparams: kt.HyperParameters) -> keras.Model:
    """Gradient-boosted trees (TF-DF, a tf_keras model) on the same transformed features: the
    z-scores as numerical, the ids as categorical inputs; the label as the task asks. Its
    output has the other families' shape (binary [n, 1] positive-class probability, multiclass
    [n, classes], regression [n, 1]), so export, signatures and baselines take it unchanged.
    The trees stop early on TF-DF's own validation share of the training rows (10%), at most
    MAX_TREES of them; nothing is printed (verbose=0, and the C++ log is captured:
    quiet_native_logs)."""
    import tensorflow_decision_forests as tfdf

    semantic = tfdf.keras.FeatureSemantic
    features = [
        tfdf.keras.FeatureUsage(transformed_name(k), semantic.NUMERICAL) for k in spec.numeric
    ]
    features += [
        tfdf.keras.FeatureUsage(transformed_name(k), semantic.CATEGORICAL)
        for k in _categorical_cardinalities(spec)
    ]
    task = tfdf.keras.Task.REGRESSION if spec.task == REGRESSION else tfdf.keras.Task.CLASSIFICATION
    # Its constructor already logs warnings about unused defaults from C++.
    with quiet_native_logs():
        return tfdf.keras.GradientBoostedTreesModel(
            task=task,
            features=features,
            exclude_non_specified_features=True,
            num_trees=MAX_TREES,
            max_depth=int(hparams.values.get("max_depth", 6)),
            random_seed=42,
            verbose=0,
        )


def with_model_inputs(forest: keras.Model, spec: DatasetSpec) -> keras.Model:
    """A trained TF-DF model behind the other families' Keras inputs (one [n, 1] tensor per
    transformed feature): what is exported, so the Transform layer's outputs, whose rank TF-DF
    cannot take when it is unknown, reach the trees as the same [n, 1] columns."""
    inputs, _, _ = _inputs(spec)
    # Reshape: a Keras Input does not fix the rank of what it is fed at serving time.
    columns = {i.name: keras.layers.Reshape((1,))(i) for i in inputs}
    return keras.Model(inputs, forest(columns))


def _categorical_cardinalities(spec: DatasetSpec) -> dict[str, int]:
    """Number of ids each categorical transformed feature can take."""
    sizes = dict(spec.categorical)
    sizes.update({k: spec.bucket_count + 1 for k in spec.bucketized})
    sizes.update({k: spec.vocab_size + spec.oov_size for k in spec.vocabulary})
    return sizes


def _head_width(spec: DatasetSpec) -> int:
    return spec.num_classes if spec.task == MULTICLASS else 1


def _inputs(spec: DatasetSpec) -> tuple[list, list, list]:
    """The model's Keras inputs (numeric z-scores, then categorical ids, in the spec's order),
    the numeric inputs and the categorical ones with their cardinalities."""
    numeric = [
        keras.Input(shape=(1,), name=transformed_name(k), dtype=tf.float32) for k in spec.numeric
    ]
    categorical = [
        (keras.Input(shape=(1,), name=transformed_name(key), dtype=tf.int64), cardinality)
        for key, cardinality in _categorical_cardinalities(spec).items()
    ]
    return numeric + [i for i, _ in categorical], numeric, categorical


def one_hot(ids: tf.Tensor, cardinality: int) -> tf.SparseTensor:
    """Ids [n, 1] as a sparse one-hot [n, cardinality]. A Dense layer reads a sparse input
    through `embedding_lookup_sparse`: the same kernel and the same sums, without the dense
    [n, 4,288] tensor (taxi) that was most of each model's predict time (docs/performance.md,
    ninth pass)."""
    return keras.layers.CategoryEncoding(cardinality, output_mode="one_hot", sparse=True)(ids)


def _one_hots(categorical: list) -> tf.SparseTensor:
    columns = [one_hot(ids, n) for ids, n in categorical]
    return keras.layers.concatenate(columns) if len(columns) > 1 else columns[0]


# The linear models' logits are the sum of two Dense layers: LINEAR_LAYER on the one-hot ids
# (sparse; it holds the bias) and NUMERIC_SUFFIX's on the z-scores (dense: Keras concatenates a
# sparse tensor only with sparse ones, and a dense-to-sparse op cannot sit in a functional
# model). A spec with only ids, or only numbers, has one of them, named LINEAR_LAYER. Together
# their kernels are the rows of linear_design's columns (numbers first): set_linear_weights.
LINEAR_LAYER, NUMERIC_SUFFIX = "linear", "_numeric"


def linear_logits(
    spec: DatasetSpec, numeric: list, categorical: list, name: str, **dense
) -> tf.Tensor:
    """z-scores beside one-hot ids through one linear layer, as the two Dense layers above."""
    width = _head_width(spec)
    parts = []
    if categorical:
        parts.append(keras.layers.Dense(width, name=name, **dense)(_one_hots(categorical)))
    if numeric:
        x = keras.layers.concatenate(numeric) if len(numeric) > 1 else numeric[0]
        own = name + NUMERIC_SUFFIX if categorical else name
        parts.append(keras.layers.Dense(width, name=own, use_bias=not categorical, **dense)(x))
    return keras.layers.add(parts) if len(parts) > 1 else parts[0]


def linear_columns(spec: DatasetSpec) -> int:
    """Columns of the linear models' design (linear_design): z-scores, then one-hot ids."""
    return len(spec.numeric) + sum(_categorical_cardinalities(spec).values())


def _two_layer_head(spec: DatasetSpec) -> bool:
    """True when linear_logits gives `spec` two Dense layers (it has ids and numbers)."""
    return bool(spec.numeric) and bool(_categorical_cardinalities(spec))


def linear_weights(model: keras.Model, spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """(kernel [linear_columns, width], bias [width]) of a linear model, rows in
    linear_design's column order."""
    kernel, bias = model.get_layer(LINEAR_LAYER).get_weights()
    if _two_layer_head(spec):
        numeric = model.get_layer(LINEAR_LAYER + NUMERIC_SUFFIX).get_weights()[0]
        kernel = np.concatenate([numeric, kernel])
    return kernel, bias


def set_linear_weights(
    model: keras.Model, spec: DatasetSpec, kernel: np.ndarray, bias: np.ndarray
) -> None:
    """Set a linear model's weights from a kernel whose rows are linear_design's columns."""
    kernel = np.asarray(kernel, np.float32)
    bias = np.asarray(bias, np.float32)
    if kernel.shape[0] != linear_columns(spec):
        raise ValueError(f"kernel has {kernel.shape[0]} rows, the design {linear_columns(spec)}")
    if _two_layer_head(spec):
        numeric = len(spec.numeric)
        model.get_layer(LINEAR_LAYER + NUMERIC_SUFFIX).set_weights([kernel[:numeric]])
        model.get_layer(LINEAR_LAYER).set_weights([kernel[numeric:], bias])
    else:
        model.get_layer(LINEAR_LAYER).set_weights([kernel, bias])


def linear_design(spec: DatasetSpec, features: dict[str, np.ndarray]):
    """The rows of `features` (transformed columns, [n] or [n, 1]) as the linear models' design,
    column for column what linear_logits' layers read (linear_weights' rows), as a scipy CSR
    matrix [n, columns]: the one-hot part is almost all zeros (taxi: 4,288 columns, 0.4%
    non-zero), so the linear baseline's fit (modules/baselines.py) works on it in SciPy, outside
    Keras. Ids outside a column's range raise, as CategoryEncoding does."""
    from scipy import sparse

    numeric = [
        np.asarray(features[transformed_name(k)], np.float64).reshape(-1) for k in spec.numeric
    ]
    n = len(numeric[0]) if numeric else len(next(iter(features.values()), []))
    blocks = [sparse.csr_matrix(np.stack(numeric, axis=1))] if numeric else []
    for key, cardinality in _categorical_cardinalities(spec).items():
        ids = np.asarray(features[transformed_name(key)]).reshape(-1).astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= cardinality):
            raise ValueError(
                f"{transformed_name(key)} holds ids outside [0, {cardinality}): "
                f"{int(ids.min())}..{int(ids.max())}"
            )
        blocks.append(
            sparse.csr_matrix(
                (np.ones(n), (np.arange(n), ids)), shape=(n, cardinality), dtype=np.float64
            )
        )
    return sparse.hstack(blocks, format="csr")


def _compile_head(
    spec: DatasetSpec,
    inputs: list,
    logits: tf.Tensor,
    learning_rate: float,
    steps_per_execution: int,
    label_scale: tuple[float, float] | None = None,
) -> keras.Model:
    """The task's output activation, loss and metrics on top of `logits`. A regression output is
    `logits * std + mean` of the training label (`label_scale`): the layers then learn a z-score,
    which a few hundred steps reach whatever the label's units."""
    if spec.task == BINARY:
        output = keras.layers.Activation("sigmoid", name=PROBABILITIES)(logits)
        loss = keras.losses.BinaryCrossentropy()
        metrics = [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")]
    elif spec.task == MULTICLASS:
        output = keras.layers.Activation("softmax", name=PROBABILITIES)(logits)
        loss = keras.losses.SparseCategoricalCrossentropy()
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    else:
        if label_scale is not None:
            mean, std = label_scale
            logits = keras.layers.Rescaling(float(std or 1.0), offset=float(mean))(logits)
        output = keras.layers.Activation("linear", name=PREDICTIONS)(logits)
        loss = keras.losses.MeanSquaredError()
        metrics = [keras.metrics.MeanAbsoluteError(name="mae")]

    model = keras.Model(inputs=inputs, outputs=output)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=loss,
        metrics=metrics,
        steps_per_execution=steps_per_execution,
    )
    # The optimizer's slots exist before the first step: otherwise fit()'s first call creates
    # them while tracing, and tf.function traces the whole training step a second time.
    model.optimizer.build(model.trainable_variables)
    return model


def build_linear_model(
    spec: DatasetSpec,
    learning_rate: float = 1e-2,
    steps_per_execution: int = STEPS_PER_EXECUTION,
    label_scale: tuple[float, float] | None = None,
) -> keras.Model:
    """Logistic (softmax) or linear regression on the transformed features: the linear family
    and the run's linear baseline (linear_logits; the baseline's fit sets its weights through
    set_linear_weights)."""
    inputs, numeric, categorical = _inputs(spec)
    logits = linear_logits(spec, numeric, categorical, LINEAR_LAYER)
    return _compile_head(spec, inputs, logits, learning_rate, steps_per_execution, label_scale)


def build_constant_model(spec: DatasetSpec, value: list[float]) -> keras.Model:
    """The constant baseline: the same inputs, and every row gets the training label's mean,
    as logits (binary: log-odds of the positive rate, multiclass: log class frequencies,
    regression: the mean), so it exports and serves like any other model."""
    inputs, numeric, categorical = _inputs(spec)
    logits = linear_logits(
        spec,
        numeric,
        categorical,
        "constant",
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(value),
        trainable=False,
    )
    return _compile_head(spec, inputs, logits, 1e-3, 1)


def build_keras_model(
    hparams: kt.HyperParameters,
    steps_per_execution: int = STEPS_PER_EXECUTION,
    spec: DatasetSpec | None = None,
    label_scale: tuple[float, float] | None = None,
) -> keras.Model:
    """The model of the hyperparameters' family. Wide-and-deep: one-hot categoricals into a
    linear head (wide), numerics plus embeddings through a tower whose layers halve in width
    (deep). Linear: build_linear_model. Gradient-boosted trees: build_gradient_boosted_trees.
    The head follows the task."""
    spec = spec or dataset_spec.load()
    if model_family(hparams) == GRADIENT_BOOSTED_TREES:
        return build_gradient_boosted_trees(spec, hparams)
    learning_rate = float(hparams.get("learning_rate"))
    if model_family(hparams) == LINEAR:
        return build_linear_model(spec, learning_rate, steps_per_execution, label_scale)
    inputs, numeric, categorical = _inputs(spec)
    deep = list(numeric)
    for ids, cardinality in categorical:
        dim = max(2, min(8, int(cardinality**0.25) * 2))
        deep.append(keras.layers.Flatten()(keras.layers.Embedding(cardinality, dim)(ids)))

    x = keras.layers.concatenate(deep) if len(deep) > 1 else deep[0]
    units = int(hparams.get("first_hidden_units"))
    for _ in range(int(hparams.get("num_hidden_layers"))):
        x = keras.layers.Dense(units, activation="relu")(x)
        units = max(8, units // 2)
    width = _head_width(spec)
    logits = keras.layers.Dense(width)(x)
    if categorical:
        logits = keras.layers.add([logits, keras.layers.Dense(width)(_one_hots(categorical))])
    return _compile_head(spec, inputs, logits, learning_rate, steps_per_execution, label_scale)
