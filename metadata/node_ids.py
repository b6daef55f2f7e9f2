"""Node ids of create_pipeline's components: what the pipeline names its steps and what every
query of ML Metadata looks them up by, defined once here at the bottom so both sides agree.

They are TFX's default ids (the component class names) where a stock component is used, plus
this project's own steps.
"""

from __future__ import annotations

# Each kind of source has its own ExampleGen; every one of them is "the ingest step".
EXAMPLE_GENS = {
    "csv": "CsvExampleGen",
    "parquet": "ParquetExampleGen",
    "tfrecord": "ImportExampleGen",
    "postgresql": "PostgresExampleGen",
    "bigquery": "BigQueryExampleGen",
}
MULTI_SOURCE_EXAMPLE_GEN = "MultiSourceExampleGen"
EXAMPLE_GEN = EXAMPLE_GENS["csv"]
ROW_CLEANER = "RowCleaner"
STATISTICS_GEN = "StatisticsGen"
EXAMPLE_VALIDATOR = "ExampleValidator"
DRIFT_VALIDATOR = "DriftValidator"
DATA_GATE = "DataGate"
TRANSFORM = "Transform"
EVALUATOR = "Evaluator"
PUSHER = "Pusher"


def is_example_gen(node_id: str) -> bool:
    """Is `node_id` the ingest step of some run (whichever source it read)?"""
    return node_id in EXAMPLE_GENS.values() or node_id == MULTI_SOURCE_EXAMPLE_GEN
