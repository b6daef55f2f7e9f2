"""The ML Metadata layer: the one place that reads the pipeline's ML Metadata store.

    connection   paths / URLs / .pbtxt -> ConnectionConfig; password-free descriptions
    store        open_store() -> MetadataStore: runs, executions, artifacts, spans, pushed
                 models, lineage subgraph (MLMD's query API only: SQLite, MySQL, PostgreSQL)
    records      the plain records typed queries return (RunRecord, SpanRecord, ...)
    evaluation   TFMA metrics overall and per slice, failed thresholds
    payloads     hyperparameters, schema summary, input files of an ExampleGen
    model_facts  what MLMD knows about one (pushed) model: run, span, evaluation, lineage ids
    run_process  the local runner's process per run (pid, host, start, end): a killed run's
                 "running" executions read as failed

It sits at the bottom: it imports nothing from pipeline/, lineage/, serving/ or runners/
(tests/test_import_direction.py keeps it so).
"""

from metadata.store import MetadataError, MetadataStore, open_store

__all__ = ["MetadataError", "MetadataStore", "open_store"]
