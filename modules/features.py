"""The active dataset's features and label as module constants: the taxi-compatible facade.

The source of truth is the dataset spec (datasets/<name>/dataset.yaml, modules/dataset_spec.py);
these constants are computed from the active spec (the default dataset, taxi, unless
$MLOPS_DATASET names another) so code written against the taxi constants keeps working.
Pipeline code that serves several datasets takes a DatasetSpec instead.
"""

from __future__ import annotations

from modules import dataset_spec

SPEC: dataset_spec.DatasetSpec = dataset_spec.load()

# Numeric features, standardised to z-scores.
DENSE_FLOAT_FEATURE_KEYS: list[str] = list(SPEC.numeric)

# Bucketized into quantile buckets.
BUCKET_FEATURE_KEYS: list[str] = list(SPEC.bucketized)
FEATURE_BUCKET_COUNT: int = SPEC.bucket_count

# Small integer categoricals used as ids directly: key -> number of ids (max value + 1).
CATEGORICAL_NUMERICAL_FEATURES: dict[str, int] = dict(SPEC.categorical)
CATEGORICAL_NUMERICAL_FEATURE_KEYS: list[str] = list(CATEGORICAL_NUMERICAL_FEATURES)

# Categoricals given a vocabulary.
VOCAB_FEATURE_KEYS: list[str] = list(SPEC.vocabulary)
VOCAB_SIZE: int = SPEC.vocab_size
OOV_SIZE: int = SPEC.oov_size

# Present in the data but not a model input.
UNUSED_FEATURE_KEYS: list[str] = list(SPEC.unused)

# Which source a row came from, when several feed one run (pipeline/ingest/sources.py writes it, the
# schema declares it optional and not in SERVING); never a model input.
SOURCE_FEATURE_KEY: str = "source"

LABEL_KEY: str = SPEC.label
if SPEC.derive is not None:
    # Raw columns that derive the label: label = TIPS_KEY > LABEL_TIP_FRACTION * FARE_KEY.
    TIPS_KEY: str = SPEC.derive.numerator
    FARE_KEY: str = SPEC.derive.denominator
    LABEL_TIP_FRACTION: float = SPEC.derive.greater_than

# Evaluation slices.
SLICE_FEATURE_KEYS: list[str] = list(SPEC.slices)

RAW_FEATURE_KEYS: list[str] = SPEC.raw_feature_keys
"""Raw model inputs: what a client sends to the serving signatures."""

STRING_FEATURE_KEYS: list[str] = [k for k in RAW_FEATURE_KEYS if SPEC.raw_dtype(k) == "bytes"]
"""Raw features stored as bytes in tf.Examples."""

INT_FEATURE_KEYS: list[str] = [k for k in RAW_FEATURE_KEYS if SPEC.raw_dtype(k) == "int64"]
"""Raw features stored as int64 in tf.Examples; the other numerics are float32."""

transformed_name = dataset_spec.transformed_name


def raw_dtype(key: str) -> str:
    """tf.Example kind of a raw feature: 'int64', 'float' or 'bytes'."""
    return SPEC.raw_dtype(key)
