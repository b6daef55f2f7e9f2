"""Lineage and run history from the pipeline's ML Metadata store (see docs/lineage.md).

`queries` answers runs / artifacts / trace / diff through the metadata layer (metadata/);
`render` and `graph` present the answers; `cli` is `mlops lineage`.
"""
