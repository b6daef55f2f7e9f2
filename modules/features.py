"""The single source of truth for the taxi dataset's features and label.

Every other module (preprocessing, model, serving client, schema checks, tests) derives its
names from here, so adding or renaming a feature is a one-file change.
"""

from __future__ import annotations

# Numeric features, standardised to z-scores.
DENSE_FLOAT_FEATURE_KEYS: list[str] = ["trip_miles", "fare", "trip_seconds"]

# Coordinates, bucketized into quantile buckets.
BUCKET_FEATURE_KEYS: list[str] = [
    "pickup_latitude",
    "pickup_longitude",
    "dropoff_latitude",
    "dropoff_longitude",
]
FEATURE_BUCKET_COUNT: int = 10

# Small integer categoricals used as ids directly: key -> number of ids (max value + 1).
CATEGORICAL_NUMERICAL_FEATURES: dict[str, int] = {
    "trip_start_hour": 24,
    "trip_start_day": 8,
    "trip_start_month": 13,
    "pickup_community_area": 78,
    "dropoff_community_area": 78,
}
CATEGORICAL_NUMERICAL_FEATURE_KEYS: list[str] = list(CATEGORICAL_NUMERICAL_FEATURES)

# Categoricals given a vocabulary: strings, and census tracts (11-digit ids, too sparse for
# identity ids).
VOCAB_FEATURE_KEYS: list[str] = [
    "payment_type",
    "company",
    "pickup_census_tract",
    "dropoff_census_tract",
]
VOCAB_SIZE: int = 1000
OOV_SIZE: int = 10

# Present in the CSV but not a model input (kept for lineage/slicing, dropped from the model).
UNUSED_FEATURE_KEYS: list[str] = ["trip_start_timestamp"]

# Which source a row came from, when several feed one run (pipeline/sources.py writes it, the
# schema declares it optional and not in SERVING); never a model input.
SOURCE_FEATURE_KEY: str = "source"

# Raw columns that derive the label; "big tipper" = tips > LABEL_TIP_FRACTION * fare.
TIPS_KEY: str = "tips"
FARE_KEY: str = "fare"
LABEL_TIP_FRACTION: float = 0.2
LABEL_KEY: str = "big_tipper"

# Evaluation slice.
SLICE_FEATURE_KEYS: list[str] = ["trip_start_hour"]

RAW_FEATURE_KEYS: list[str] = (
    DENSE_FLOAT_FEATURE_KEYS
    + BUCKET_FEATURE_KEYS
    + CATEGORICAL_NUMERICAL_FEATURE_KEYS
    + VOCAB_FEATURE_KEYS
)
"""Raw model inputs: what a client sends to the serving signatures."""

STRING_FEATURE_KEYS: list[str] = ["payment_type", "company"]
"""Raw features stored as bytes in tf.Examples."""

INT_FEATURE_KEYS: list[str] = CATEGORICAL_NUMERICAL_FEATURE_KEYS + [
    "pickup_census_tract",
    "dropoff_census_tract",
    "trip_seconds",
]
"""Raw features stored as int64 in tf.Examples; the other numerics are float32."""


def transformed_name(key: str) -> str:
    """Name of a feature after Transform; a suffix keeps raw and transformed names apart."""
    return f"{key}_xf"


def raw_dtype(key: str) -> str:
    """tf.Example kind of a raw feature: 'int64', 'float' or 'bytes'."""
    if key in STRING_FEATURE_KEYS:
        return "bytes"
    if key in INT_FEATURE_KEYS:
        return "int64"
    return "float"
