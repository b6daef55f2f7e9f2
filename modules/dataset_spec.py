"""A dataset described in one place: `datasets/<name>/dataset.yaml` beside its curated schema.

The spec says where the data is, what the label and the task are, which role every column plays,
how to slice the evaluation, when to bless a model and how sensitive the drift tests are.
Preprocessing, the model, the serving signatures, the Evaluator's config, the client encoding,
the drift check and the web app's form all derive from it (docs/datasets.md is the reference).

It travels to TFX executors as plain JSON inside each component's `custom_config`
(`DatasetSpec.to_config()` / `from_config()`), so an executor needs no file of its own and an
edited spec changes the components' exec properties, which invalidates their cache. Column
types are read from the schema once, when the spec is loaded.

Errors are `SpecError`s with one printable line naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATASETS_DIR = PROJECT_ROOT / "datasets"
SPEC_FILE = "dataset.yaml"
SCHEMA_FILE = "schema.pbtxt"
DEFAULT_DATASET = "taxi"
# Names a dataset (and its data/ and serving_model/ folders) may have.
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# The environment variable that picks the dataset modules/features.py describes (default taxi).
DATASET_ENV = "MLOPS_DATASET"
# Fields to_config() leaves out.
LOCAL_PATHS = ("data_root", "schema_path", "spec_path")
# Fields that are not the executors' business either: editing them must not invalidate TFX's
# cache (the retention policy is read by `mlops gc`, never by a component).
NOT_FOR_EXECUTORS = (*LOCAL_PATHS, "retention")
# custom_config key of the spec in every component that runs user code.
CONFIG_KEY = "dataset"

BINARY, MULTICLASS, REGRESSION = "binary", "multiclass", "regression"
TASKS = (BINARY, MULTICLASS, REGRESSION)
ROLES = ("numeric", "bucketized", "categorical", "vocabulary", "unused")
# Schema type -> tf.Example kind (what modules/features.raw_dtype always returned).
_KINDS = {"INT": "int64", "FLOAT": "float", "BYTES": "bytes"}
# How much better than the run's linear baseline the candidate must be on the task's headline
# metric (AUC, accuracy, MSE; modules/baselines.py); absent: more than the eval noise.
LINEAR_MARGIN_KEY = "linear_margin"
# Evaluation thresholds a task can gate on (value bounds on the overall slice, the gain over
# the previously blessed model on the task's headline metric, the margin over the linear
# baseline).
THRESHOLD_KEYS = {
    BINARY: ("min_auc", "min_accuracy", "min_auc_gain", LINEAR_MARGIN_KEY),
    MULTICLASS: ("min_accuracy", "min_accuracy_gain", LINEAR_MARGIN_KEY),
    REGRESSION: ("max_mse", "max_mae", "max_mse_increase", LINEAR_MARGIN_KEY),
}
# Keys other parts of the project own: kept and passed through as they are, never parsed here.
PASS_THROUGH_KEYS = ("sources", "max_quarantine_fraction")


class SpecError(ValueError):
    """A dataset spec that cannot be used; the message is one line naming file and key."""


@dataclasses.dataclass(frozen=True)
class DerivedLabel:
    """label = numerator > greater_than * denominator (1) or not (0), e.g. tips > 0.2 * fare."""

    numerator: str
    denominator: str
    greater_than: float


@dataclasses.dataclass(frozen=True)
class DriftTest:
    """Significance and practical floor of one feature's drift test (pipeline/drift_measures)."""

    alpha: float = 1e-3
    min_distance: float = 0.03


@dataclasses.dataclass(frozen=True)
class Retention:
    """What `mlops gc` keeps of past runs (upkeep/gc.py): the newest `keep_last` runs, and every
    run younger than `keep_days` days (0: no age rule). Whatever the policy, the lineage of the
    served, labelled and latest blessed models and the drift gate's baseline are always kept."""

    keep_last: int = 10
    keep_days: float = 14.0


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    name: str
    task: str
    label: str
    # Binary/multiclass: the class names in id order (binary: [negative, positive]).
    classes: tuple[str, ...]
    numeric: tuple[str, ...]
    bucketized: tuple[str, ...]
    categorical: Mapping[str, int]
    vocabulary: tuple[str, ...]
    unused: tuple[str, ...]
    # Column -> tf.Example kind (int64, float, bytes), from the schema.
    kinds: Mapping[str, str]
    derive: DerivedLabel | None = None
    bucket_count: int = 10
    vocab_size: int = 1000
    oov_size: int = 10
    slices: tuple[str, ...] = ()
    thresholds: Mapping[str, float] = dataclasses.field(default_factory=dict)
    drift: DriftTest = DriftTest()
    drift_features: Mapping[str, DriftTest] = dataclasses.field(default_factory=dict)
    data_root: str = ""
    input_pattern: str = "span-{SPAN}/*.csv"
    schema_path: str = ""
    spec_path: str = ""
    description: str = ""
    # Owned elsewhere (other data sources, row cleaning): carried, not interpreted.
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    retention: Retention = Retention()

    # ---- derived views -------------------------------------------------------------------------
    @property
    def raw_feature_keys(self) -> list[str]:
        """Model inputs, what a client sends: numeric, bucketized, categorical, vocabulary."""
        return [*self.numeric, *self.bucketized, *self.categorical, *self.vocabulary]

    @property
    def label_columns(self) -> list[str]:
        """Raw columns the label comes from (never model inputs, absent when serving)."""
        if self.derive:
            return [self.derive.numerator]
        return [self.label]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def is_classification(self) -> bool:
        return self.task in (BINARY, MULTICLASS)

    def raw_dtype(self, key: str) -> str:
        """tf.Example kind of a raw column: 'int64', 'float' or 'bytes'."""
        return self.kinds.get(key, "float")

    def drift_test(self, key: str) -> DriftTest:
        return self.drift_features.get(key, self.drift)

    # ---- JSON round trip (custom_config) ------------------------------------------------------
    def to_config(self) -> dict[str, Any]:
        """The spec as JSON-able data: what components carry in custom_config."""
        out = dataclasses.asdict(self)
        # Pairs, not a mapping: JSON encoders may sort keys, and the feature order matters.
        out["categorical"] = [[k, n] for k, n in self.categorical.items()]
        # Where the files are is the pipeline's business, not the executors': leaving the paths
        # out keeps the cache key the same in every checkout.
        for key in NOT_FOR_EXECUTORS:
            out.pop(key)
        return json.loads(json.dumps(out, sort_keys=True))

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> DatasetSpec:
        d = dict(data)
        for key in ("classes", "numeric", "bucketized", "vocabulary", "unused", "slices"):
            d[key] = tuple(d.get(key) or ())
        categorical = d.get("categorical") or []
        d["categorical"] = dict(
            categorical.items() if isinstance(categorical, dict) else categorical
        )
        d["derive"] = DerivedLabel(**d["derive"]) if d.get("derive") else None
        d["drift"] = DriftTest(**(d.get("drift") or {}))
        d["retention"] = Retention(**(d.get("retention") or {}))
        d["drift_features"] = {
            k: DriftTest(**v) for k, v in (d.get("drift_features") or {}).items()
        }
        return cls(**d)


# ---- loading -------------------------------------------------------------------------------------
def spec_path(dataset: str | os.PathLike | None = None) -> Path:
    """The dataset.yaml of a dataset name (under datasets/), a directory or a file path."""
    dataset = str(dataset or os.environ.get(DATASET_ENV) or DEFAULT_DATASET)
    path = Path(dataset)
    if NAME_PATTERN.match(dataset) and not path.exists():
        path = DATASETS_DIR / dataset
    if path.is_dir():
        path = path / SPEC_FILE
    return path


def load(dataset: str | os.PathLike | None = None) -> DatasetSpec:
    """Load and check a dataset spec (name, directory or dataset.yaml); SpecError says why not."""
    try:
        path = spec_path(dataset)
        found = path.is_file()
    except OSError as e:  # e.g. a name longer than the file system allows: still one line
        shown = str(dataset)[:60] + ("..." if len(str(dataset)) > 60 else "")
        raise SpecError(f"no dataset spec at {shown}: {e.strerror}") from None
    if not found:
        known = ", ".join(available()) or "none"
        raise SpecError(f"no dataset spec at {path} (datasets: {known})")
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SpecError(f"{path}: not valid YAML: {first}") from None
    return parse(data, path)


def available(datasets_dir: Path = DATASETS_DIR) -> list[str]:
    """Names of the datasets under datasets/."""
    if not datasets_dir.is_dir():
        return []
    return sorted(p.name for p in datasets_dir.iterdir() if (p / SPEC_FILE).is_file())


def _names(where: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise SpecError(f"{where} must be a list of column names")
    for v in value:
        if not isinstance(v, str) or not v:
            raise SpecError(f"{where}: {v!r} is not a column name")
    return tuple(value)


def _number(where: str, value: Any, integer: bool = False, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{where} must be a number, not {value!r}")
    if integer and int(value) != value:
        raise SpecError(f"{where} must be an integer, not {value!r}")
    if positive and value <= 0:
        raise SpecError(f"{where} must be positive, not {value!r}")
    return int(value) if integer else float(value)


def _mapping(where: str, value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{where} must be a mapping")
    return value


def _known(where: str, data: dict, keys: tuple[str, ...]) -> None:
    unknown = sorted(str(k) for k in data if k not in keys)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(keys)})")


def schema_kinds(schema_path: Path) -> dict[str, str]:
    """Column -> tf.Example kind from a schema .pbtxt."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = schema_pb2.Schema()
    try:
        text_format.Parse(schema_path.read_text(encoding="utf-8"), schema)
    except OSError as e:
        raise SpecError(f"cannot read the schema {schema_path}: {e.strerror or e}") from None
    except text_format.ParseError as e:
        raise SpecError(f"{schema_path}: not a schema text proto: {e}") from None
    return {
        f.name: _KINDS.get(schema_pb2.FeatureType.Name(f.type), "float") for f in schema.feature
    }


TOP_KEYS = (
    "name",
    "description",
    "schema",
    "source",
    "task",
    "label",
    "features",
    "slices",
    "evaluation",
    "drift",
    "retention",
    *PASS_THROUGH_KEYS,
)


def parse(data: Any, path: Path) -> DatasetSpec:
    """Check a loaded YAML document and resolve it against its schema, one section at a time
    (in this order, so the first problem reported is the same whatever else is wrong)."""
    where = str(path)
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping of spec keys, got {type(data).__name__}")
    _known(where, data, TOP_KEYS)
    name, schema_path, kinds = _name_and_schema(where, data, path)
    data_root, input_pattern = _source(where, data, path.parent, name)
    task = data.get("task")
    if task not in TASKS:
        raise SpecError(f"{where}: task must be one of {', '.join(TASKS)}, not {task!r}")
    label, classes, derive = _label(where, data, task, kinds, schema_path)
    roles, categorical, bucket, vocab = _features(where, data, kinds, label, derive)
    slices = _names(f"{where}: slices", data.get("slices"))
    for key in slices:
        if key not in kinds:
            raise SpecError(f"{where}: slices: {key!r} is not in the schema")
    evaluation = _mapping(f"{where}: evaluation", data.get("evaluation"))
    _known(f"{where}: evaluation ({task})", evaluation, THRESHOLD_KEYS[task])
    thresholds = {k: _number(f"{where}: evaluation.{k}", v) for k, v in evaluation.items()}
    default_test, drift_features = _drift(where, data)
    bucket_count, vocab_size, oov_size = _sizes(where, bucket, vocab)
    return DatasetSpec(
        name=name,
        task=task,
        label=label,
        classes=classes,
        numeric=roles["numeric"],
        bucketized=roles["bucketized"],
        categorical=categorical,
        vocabulary=roles["vocabulary"],
        unused=roles["unused"],
        kinds=kinds,
        derive=derive,
        bucket_count=bucket_count,
        vocab_size=vocab_size,
        oov_size=oov_size,
        slices=slices,
        thresholds=thresholds,
        drift=default_test,
        drift_features=drift_features,
        data_root=data_root,
        input_pattern=input_pattern,
        schema_path=str(schema_path),
        spec_path=str(path.resolve()),
        description=str(data.get("description") or ""),
        extra={k: data[k] for k in PASS_THROUGH_KEYS if k in data},
        retention=_retention(where, data.get("retention")),
    )


def _name_and_schema(where: str, data: dict, path: Path) -> tuple[str, Path, dict[str, str]]:
    """The dataset's name (default: its directory's) and its schema's path and column kinds."""
    name = data.get("name") or path.parent.name
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise SpecError(f"{where}: name {name!r} must match {NAME_PATTERN.pattern}")
    schema_path = (path.parent / str(data.get("schema") or SCHEMA_FILE)).resolve()
    try:
        kinds = schema_kinds(schema_path)
    except SpecError as e:
        raise SpecError(f"{where}: {e}") from None
    return name, schema_path, kinds


def _source(where: str, data: dict, base: Path, name: str) -> tuple[str, str]:
    """The `source:` block: the data root (default data/<name>) and the span input pattern."""
    source = _mapping(f"{where}: source", data.get("source"))
    _known(f"{where}: source", source, ("data_root", "input_pattern"))
    data_root = str((base / str(source.get("data_root") or f"../../data/{name}")).resolve())
    return data_root, str(source.get("input_pattern") or "span-{SPAN}/*.csv")


def _label(
    where: str, data: dict, task: str, kinds: dict[str, str], schema_path: Path
) -> tuple[str, tuple[str, ...], DerivedLabel | None]:
    """The `label:` block (a name, or name / classes / derive): (name, classes, derive)."""
    label_data = data.get("label")
    if isinstance(label_data, str):
        label_data = {"name": label_data}
    label_data = _mapping(f"{where}: label", label_data)
    _known(f"{where}: label", label_data, ("name", "classes", "derive"))
    label = label_data.get("name")
    if not isinstance(label, str) or not label:
        raise SpecError(f"{where}: label.name is missing")
    derive = None
    if label_data.get("derive") is not None:
        derive = _derived_label(where, label_data["derive"], task, kinds)
    elif label not in kinds:
        raise SpecError(f"{where}: label {label!r} is not a column of the schema {schema_path}")
    classes = tuple(str(c) for c in _names(f"{where}: label.classes", label_data.get("classes")))
    if task == BINARY and not classes:
        classes = ("0", "1")
    if task == BINARY and len(classes) != 2:
        raise SpecError(f"{where}: a binary label needs exactly 2 classes, got {len(classes)}")
    if task == MULTICLASS and len(classes) < 2:
        raise SpecError(f"{where}: a multiclass label needs label.classes (at least 2)")
    if len(set(classes)) != len(classes):
        raise SpecError(f"{where}: label.classes has duplicates")
    if task == REGRESSION and classes:
        raise SpecError(f"{where}: a regression label has no classes")
    return label, classes, derive


def _derived_label(where: str, value: Any, task: str, kinds: dict[str, str]) -> DerivedLabel:
    d = _mapping(f"{where}: label.derive", value)
    _known(f"{where}: label.derive", d, ("numerator", "denominator", "greater_than"))
    if task != BINARY:
        raise SpecError(f"{where}: label.derive makes a binary label, but task is {task}")
    for key in ("numerator", "denominator"):
        if d.get(key) not in kinds:
            raise SpecError(f"{where}: label.derive.{key} {d.get(key)!r} is not in the schema")
    return DerivedLabel(
        d["numerator"],
        d["denominator"],
        _number(f"{where}: label.derive.greater_than", d.get("greater_than")),
    )


def _features(
    where: str, data: dict, kinds: dict[str, str], label: str, derive: DerivedLabel | None
) -> tuple[dict[str, tuple[str, ...]], dict[str, float], dict, dict]:
    """The `features:` block: (columns per role, categorical sizes, the bucketized and
    vocabulary blocks, whose sizes _sizes reads). Every column in one role, in the schema, not
    the label; strings only by vocabulary."""
    feats = _mapping(f"{where}: features", data.get("features"))
    _known(f"{where}: features", feats, ROLES)
    bucket = _mapping(f"{where}: features.bucketized", feats.get("bucketized"))
    _known(f"{where}: features.bucketized", bucket, ("buckets", "keys"))
    vocab = _mapping(f"{where}: features.vocabulary", feats.get("vocabulary"))
    _known(f"{where}: features.vocabulary", vocab, ("top_k", "oov_buckets", "keys"))
    categorical = {}
    for key, size in _mapping(f"{where}: features.categorical", feats.get("categorical")).items():
        categorical[str(key)] = _number(
            f"{where}: features.categorical.{key}", size, integer=True, positive=True
        )
    roles = {
        "numeric": _names(f"{where}: features.numeric", feats.get("numeric")),
        "bucketized": _names(f"{where}: features.bucketized.keys", bucket.get("keys")),
        "categorical": tuple(categorical),
        "vocabulary": _names(f"{where}: features.vocabulary.keys", vocab.get("keys")),
        "unused": _names(f"{where}: features.unused", feats.get("unused")),
    }
    seen: dict[str, str] = {}
    for role, keys in roles.items():
        for key in keys:
            if key in seen:
                raise SpecError(f"{where}: column {key!r} is both {seen[key]} and {role}")
            if key not in kinds:
                raise SpecError(f"{where}: features.{role}: {key!r} is not in the schema")
            if key in (label, *(derive and [derive.numerator] or [])):
                raise SpecError(f"{where}: features.{role}: {key!r} is the label")
            seen[key] = role
    if not any(roles[r] for r in ROLES if r != "unused"):
        raise SpecError(f"{where}: features: no model input (numeric, categorical, ...)")
    for role in ("numeric", "bucketized", "categorical"):
        for key in roles[role]:
            if kinds[key] == "bytes":
                raise SpecError(f"{where}: features.{role}: {key!r} is a string column")
    return roles, categorical, bucket, vocab


def _drift(where: str, data: dict) -> tuple[DriftTest, dict[str, DriftTest]]:
    """The `drift:` block: the default test and the per-feature ones (which inherit it)."""
    drift = _mapping(f"{where}: drift", data.get("drift"))
    _known(f"{where}: drift", drift, ("alpha", "min_distance", "features"))

    def drift_test(at: str, d: dict, default: DriftTest) -> DriftTest:
        _known(at, d, ("alpha", "min_distance"))
        return DriftTest(
            _number(f"{at}.alpha", d.get("alpha", default.alpha), positive=True),
            _number(f"{at}.min_distance", d.get("min_distance", default.min_distance)),
        )

    default_test = drift_test(
        f"{where}: drift", {k: v for k, v in drift.items() if k != "features"}, DriftTest()
    )
    drift_features = {
        str(k): drift_test(
            f"{where}: drift.features.{k}",
            _mapping(f"{where}: drift.features.{k}", v),
            default_test,
        )
        for k, v in _mapping(f"{where}: drift.features", drift.get("features")).items()
    }
    return default_test, drift_features


def _sizes(where: str, bucket: dict, vocab: dict) -> tuple[int, int, int]:
    """(bucket count, vocabulary size, OOV buckets): positive integers, defaults 10, 1000, 10."""
    at = f"{where}: features"
    return (
        int(_number(f"{at}.bucketized.buckets", bucket.get("buckets", 10), True, True)),
        int(_number(f"{at}.vocabulary.top_k", vocab.get("top_k", 1000), True, True)),
        int(_number(f"{at}.vocabulary.oov_buckets", vocab.get("oov_buckets", 10), True, True)),
    )


def _retention(where: str, value: Any) -> Retention:
    """The `retention:` block; absent keys take Retention's defaults."""
    block = _mapping(f"{where}: retention", value)
    _known(f"{where}: retention", block, ("keep_last", "keep_days"))
    default = Retention()
    keep_last = block.get("keep_last", default.keep_last)
    keep_days = block.get("keep_days", default.keep_days)
    for key, value in (("keep_last", keep_last), ("keep_days", keep_days)):
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(f"{where}: retention.{key} must be a finite number, not {value!r}")
    keep_last = int(_number(f"{where}: retention.keep_last", keep_last, integer=True))
    keep_days = _number(f"{where}: retention.keep_days", keep_days)
    if keep_last < 1:
        raise SpecError(f"{where}: retention.keep_last must be at least 1, not {keep_last}")
    if keep_days < 0:
        raise SpecError(f"{where}: retention.keep_days must be 0 or more, not {keep_days}")
    return Retention(keep_last=keep_last, keep_days=keep_days)


def from_custom_config(custom_config: Mapping[str, Any] | None) -> DatasetSpec:
    """The spec a component was given in custom_config, else the active (default) one."""
    data = (custom_config or {}).get(CONFIG_KEY)
    return DatasetSpec.from_config(data) if data else load()


def transformed_name(key: str) -> str:
    """Name of a feature after Transform; a suffix keeps raw and transformed names apart."""
    return f"{key}_xf"
