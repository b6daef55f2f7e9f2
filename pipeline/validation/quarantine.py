"""The RowCleaner's quarantine: its figures and its rows (shown by `mlops data quarantine`).

The RowCleaner (pipeline/validation/row_cleaner.py) writes, per split, under its `quarantine` output
(a QuarantinedExamples artifact):

    Split-<name>/quarantine-00000-of-00001.jsonl   one bad row a line: {"reasons": [...],
                                                   "features": {...}, "copies": n,
                                                   "example": base64 of the tf.Example as read}
    Split-<name>/CleaningSummary.json              rows in, duplicates, quarantined, clean, reasons

and records the totals as custom properties of the artifact, so the DataGate and the run report
read them from ML Metadata. This module is light on imports (no TensorFlow until a file is read):
`mlops data --help` stays fast.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os

from metadata.store import CLEANED_EXAMPLES, ROW_CLEANER

__all__ = ["CLEANED_EXAMPLES", "ROW_CLEANER", "CleaningSummary"]

# The cleaning step's output of bad rows (its node id and clean output: metadata/store.py).
QUARANTINE = "quarantine"
# A custom type name as Kubeflow V2 accepts it: <module>.<Class> with one dot, and its container
# imports the class by that name (pipeline/__init__.py exposes it).
QUARANTINE_TYPE = "pipeline.QuarantinedExamples"
QUARANTINE_FILE_PREFIX = "quarantine"
QUARANTINE_FILE_SUFFIX = ".jsonl"
SUMMARY_FILE = "CleaningSummary.json"
# Custom properties of the quarantine artifact (also the keys of CleaningSummary.json).
ROWS_IN, DUPLICATES, QUARANTINED, CLEAN, REASON_COUNTS = (
    "rows_in",
    "duplicates",
    "quarantined",
    "clean",
    "reason_counts",
)
FEATURE_COUNTS = "feature_counts"
# Whether the RowCleaner had a schema to check rows against (False: --infer-schema, only
# duplicates were dropped).
SCHEMA_CHECKED = "schema_checked"
# The DataGate's parameter (and exec property): the largest quarantined share that passes.
MAX_QUARANTINE_FRACTION = "max_quarantine_fraction"


@dataclasses.dataclass(frozen=True)
class CleaningSummary:
    """What the RowCleaner did to one run's rows (all splits)."""

    rows_in: int
    duplicates: int
    quarantined: int
    clean: int
    reasons: dict[str, int]  # reason -> quarantined rows with at least one such violation
    features: dict[str, int] = dataclasses.field(default_factory=dict)  # the same per feature
    uri: str = ""
    schema_checked: bool = True

    @property
    def fraction(self) -> float:
        """The quarantined share of the rows read (what the DataGate compares)."""
        return self.quarantined / self.rows_in if self.rows_in else 0.0

    def exceeds(self, max_fraction: float) -> bool:
        return self.fraction > max_fraction

    def describe(self, max_fraction: float | None = None) -> str:
        """One line: rows in, duplicates dropped, quarantined by reason, share vs threshold."""
        share = f"{self.fraction:.2%}"
        if max_fraction is not None:
            sign = ">" if self.exceeds(max_fraction) else "<="
            share += f" {sign} max {max_fraction:.2%}"
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.reasons.items()))
        if self.features:
            reasons += " [" + ", ".join(f"{k} {v}" for k, v in sorted(self.features.items())) + "]"
        checked = "" if self.schema_checked else " (no curated schema: duplicates only)"
        return (
            f"{self.rows_in} rows in, {self.duplicates} duplicates dropped, "
            f"{self.quarantined} quarantined ({share}){': ' + reasons if reasons else ''}, "
            f"{self.clean} clean{checked}"
        )

    @classmethod
    def from_properties(cls, props: dict, uri: str = "") -> CleaningSummary:
        """From the quarantine artifact's properties (metadata.store.properties_of, or a
        tfx Artifact's custom properties read into a dict)."""
        reasons, features = (_counts(props.get(key)) for key in (REASON_COUNTS, FEATURE_COUNTS))
        return cls(
            rows_in=int(props.get(ROWS_IN, 0)),
            duplicates=int(props.get(DUPLICATES, 0)),
            quarantined=int(props.get(QUARANTINED, 0)),
            clean=int(props.get(CLEAN, 0)),
            reasons=reasons,
            features=features,
            uri=uri,
            schema_checked=bool(props.get(SCHEMA_CHECKED, 1)),
        )


def _counts(value) -> dict[str, int]:
    if isinstance(value, str):
        value = json.loads(value)
    return {str(k): int(v) for k, v in (value or {}).items()}


def artifact_properties(artifact) -> dict:
    """A tfx Artifact's summary custom properties as a dict (for CleaningSummary)."""
    props = {}
    for key in (ROWS_IN, DUPLICATES, QUARANTINED, CLEAN, SCHEMA_CHECKED):
        if artifact.has_custom_property(key):
            props[key] = artifact.get_int_custom_property(key)
    for key in (REASON_COUNTS, FEATURE_COUNTS):
        if artifact.has_custom_property(key):
            props[key] = artifact.get_string_custom_property(key)
    return props


@dataclasses.dataclass(frozen=True)
class QuarantinedRow:
    split: str
    reasons: list[str]
    features: dict
    copies: int
    example: bytes  # the serialized tf.Example as the cleaner read it

    def __str__(self) -> str:
        return f"[{self.split}] {'; '.join(self.reasons)}"


def read_rows(uri: str, splits: list[str] | None = None):
    """Every quarantined row under a QuarantinedExamples URI, split by split (Split-<name>/)."""
    import tensorflow as tf

    names = splits
    if names is None:
        names = sorted(
            d.rstrip("/")[len("Split-") :]
            for d in tf.io.gfile.listdir(uri)
            if d.startswith("Split-")
        )
    for split in names:
        pattern = os.path.join(
            uri, f"Split-{split}", f"{QUARANTINE_FILE_PREFIX}*{QUARANTINE_FILE_SUFFIX}"
        )
        for path in sorted(tf.io.gfile.glob(pattern)):
            with tf.io.gfile.GFile(path) as f:
                for line in f:
                    if not line.strip():
                        continue
                    record = json.loads(line)
                    yield QuarantinedRow(
                        split=split,
                        reasons=record["reasons"],
                        features=record["features"],
                        copies=record.get("copies", 1),
                        example=base64.b64decode(record["example"]),
                    )
