"""Lineage and run history from the pipeline's ML Metadata store (see docs/lineage.md).

`connection` turns paths/URLs/config files into MLMD connection configs (also used by the
runners); `store` and `queries` answer runs / artifacts / trace / diff; `render` and `graph`
present the answers; `cli` is `mlops lineage`.
"""
