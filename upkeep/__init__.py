"""Store upkeep: lineage-aware garbage collection of run outputs (`mlops gc`), backup and
restore of the SQLite metadata store, and a check that the store and the files agree
(`mlops store`). docs/upkeep.md is the guide."""
