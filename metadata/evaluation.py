"""The one reader of a ModelEvaluation artifact: TFMA metrics overall and per slice, and the
thresholds the candidate failed.

Metrics are read without importing TensorFlow (TFMA's MetricsForSlice TFRecords only need
protobuf), so the lineage CLI and a UI stay interactive. The failed thresholds live in TFMA's
ValidationResult, whose generated module imports TFMA itself: read only on request
(`read_failed_checks`), where TFMA is loaded anyway (the runner's report).
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import os
import struct
import sys
from collections.abc import Iterator
from types import ModuleType

OVERALL = "overall"
CANDIDATE = "candidate"
BASELINE = "baseline"


@dataclasses.dataclass(frozen=True)
class MetricValue:
    """One scalar TFMA metric on one slice, as TFMA recorded it."""

    slice: str  # "overall" or "feature=value[,feature=value]"
    name: str
    value: float
    model: str = ""  # "" (one model), "candidate" or "baseline"
    is_diff: bool = False  # the change of `name` against the baseline model
    # TFMA's own metrics carry example_weighted; the Keras-compiled duplicates it also reports
    # do not (and lose to TFMA's in the report).
    tfma_native: bool = True
    sub_key: str = ""  # e.g. top-k or class id; "" for plain scalars


@dataclasses.dataclass(frozen=True)
class MetricCheck:
    """A threshold the candidate failed (TFMA records only the failures)."""

    slice: str
    metric: str
    value: float
    threshold: str


@dataclasses.dataclass
class Evaluation:
    """All scalar metrics of one ModelEvaluation artifact, with views for each reader."""

    uri: str
    values: list[MetricValue]

    @property
    def slices(self) -> list[str]:
        """Slice names, 'overall' first, then sorted."""
        names = {v.slice for v in self.values}
        return sorted(names, key=lambda s: (s != OVERALL, s))

    def candidate_metrics(self, slice_name: str = OVERALL) -> dict[str, float]:
        """The candidate's TFMA metrics on a slice and their change vs the baseline
        ('<name> (change vs baseline)'); the baseline's own values are left out."""
        out: dict[str, float] = {}
        for v in self.values:
            if v.slice != slice_name or not v.tfma_native or v.sub_key:
                continue
            if v.model == BASELINE and not v.is_diff:
                continue
            out[v.name + (" (change vs baseline)" if v.is_diff else "")] = v.value
        return dict(sorted(out.items()))

    def metrics(self, slice_name: str = OVERALL) -> dict[str, float]:
        """Every scalar metric of a slice, keyed as the lineage CLI shows them: the candidate's
        under its name, other models' as 'baseline:<name>', changes as 'diff:<name>'."""
        out: dict[str, float] = {}
        for v in self.values:
            if v.slice != slice_name or v.sub_key:
                continue
            name = v.name
            if v.model and v.model not in (CANDIDATE, ""):
                name = f"{v.model}:{name}"
            if v.is_diff:
                name = f"diff:{name}"
            out[name] = v.value
        return dict(sorted(out.items()))

    def per_slice(self, metric: str) -> dict[str, float]:
        """The candidate's value of one metric on every slice (a UI's slice table)."""
        return {s: m[metric] for s in self.slices if metric in (m := self.candidate_metrics(s))}


def read_evaluation(uri: str) -> Evaluation:
    """Every scalar metric under a ModelEvaluation URI (empty when it holds none)."""
    pb2 = _metrics_pb2()
    files = sorted(glob.glob(os.path.join(uri, "metrics*")))
    values: list[MetricValue] = []
    if pb2 is None:
        return Evaluation(uri, values)
    for path in files:
        for record in tfrecords(path):
            mfs = pb2.MetricsForSlice.FromString(record)
            slice_name = slice_key_name(mfs.slice_key)
            for kv in mfs.metric_keys_and_values:
                if not kv.value.HasField("double_value"):
                    continue
                values.append(
                    MetricValue(
                        slice=slice_name,
                        name=kv.key.name,
                        value=kv.value.double_value.value,
                        model=kv.key.model_name,
                        is_diff=kv.key.is_diff,
                        tfma_native=kv.key.HasField("example_weighted"),
                        sub_key=str(kv.key.sub_key).strip() if kv.key.sub_key.ListFields() else "",
                    )
                )
    return Evaluation(uri, values)


def read_failed_checks(uri: str) -> list[MetricCheck]:
    """The thresholds the candidate failed, from TFMA's ValidationResult (imports TFMA)."""
    if not glob.glob(os.path.join(uri, "validations*")):
        return []
    from tensorflow_model_analysis.proto import validation_result_pb2

    checks: list[MetricCheck] = []
    for path in sorted(glob.glob(os.path.join(uri, "validations*"))):
        for record in tfrecords(path):
            result = validation_result_pb2.ValidationResult.FromString(record)
            for per_slice in result.metric_validations_per_slice:
                for failure in per_slice.failures:
                    key = failure.metric_key
                    checks.append(
                        MetricCheck(
                            slice_key_name(per_slice.slice_key),
                            key.name + (" (change)" if key.is_diff else ""),
                            failure.metric_value.double_value.value,
                            " ".join(str(failure.metric_threshold).split()),
                        )
                    )
    return checks


def slice_key_name(slice_key) -> str:
    """'overall' for the whole data set, else 'feature=value[,feature=value]'."""
    parts = []
    for key in slice_key.single_slice_keys:
        kind = key.WhichOneof("kind")
        value = getattr(key, kind) if kind else ""
        parts.append(f"{key.column}={value.decode() if isinstance(value, bytes) else value}")
    return ",".join(parts) or OVERALL


def tfrecords(path: str) -> Iterator[bytes]:
    """Records of an uncompressed TFRecord file (length-prefixed, CRCs not re-verified)."""
    with open(path, "rb") as f:
        while True:
            header = f.read(12)
            if len(header) < 12:
                return
            (length,) = struct.unpack("<Q", header[:8])
            data = f.read(length)
            f.read(4)
            if len(data) < length:
                return
            yield data


def _metrics_pb2() -> ModuleType | None:
    """TFMA's generated MetricsForSlice module, loaded without running TFMA's package __init__.

    It only depends on protobuf; registering it under its real name means a later real TFMA
    import in the same process reuses it instead of registering the descriptors twice.
    """
    name = "tensorflow_model_analysis.proto.metrics_for_slice_pb2"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec("tensorflow_model_analysis")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "proto", "metrics_for_slice_pb2.py")
    if not os.path.exists(path):
        return None
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        return None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception:
        del sys.modules[name]
        return None
    return module
