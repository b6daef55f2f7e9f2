"""A new dataset drafted from one CSV file (`mlops dataset init NAME --from data.csv --label COL`).

It reads the CSV, types every column the way CsvExampleGen will (INT, FLOAT, else BYTES), drops
all-empty columns (with a warning: they carry nothing to learn from or to validate), computes
TFDV statistics and infers a draft schema from them, guesses each column's role from its type
and cardinality and the task from the label, and writes, for the user to review:

    datasets/NAME/dataset.yaml    the draft spec (modules/dataset_spec.py; docs/datasets.md)
    datasets/NAME/schema.pbtxt    the draft schema (TFDV's inference; the label not in SERVING)
    data/NAME/span-1/data.csv     the data as CsvExampleGen reads it: column names made usable
                                  as feature names, missing-value tokens (NA, null, ...) as
                                  empty cells, rows without a label dropped

after which `python runners/local_runner.py --dataset NAME` runs on it with no code edited.
Whatever stops it (missing label column, a label with one class, an unreadable or empty CSV,
an existing dataset) is one line on stderr and exit status 1; nothing is written then.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import os
import re
import shutil
import tempfile
from pathlib import Path

from google.protobuf import text_format

from cli_support import CommandError, Exit
from data_stats.measures import statistics_in_memory
from modules import dataset_spec
from modules.dataset_spec import BINARY, MULTICLASS, REGRESSION, TASKS

# Cells read as missing values.
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "-nan", "inf", "-inf", "+inf"})
_INT = re.compile(r"^[+-]?[0-9]+$")
_FLOAT = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$")
_INT64 = 2**63
# Integer columns whose values are all in [0, MAX_CATEGORICAL_ID] become categorical ids.
MAX_CATEGORICAL_ID = 31
# Most distinct values a classification label may have.
MAX_CLASSES = 50
# An integer label with at most this many values is a multiclass label; more: regression.
MAX_INT_CLASSES = 10
# A string column whose every value is different (on at least this many rows) is an identifier.
MIN_ROWS_FOR_IDENTIFIER = 20
MAX_CSV_BYTES = 1 << 30


class InitError(CommandError, ValueError):
    """Why a dataset cannot be initialised from this CSV; one printable line. Its status
    (cli_support.Exit) is the kind: BAD_INPUT (the CSV's content) unless a raise says else."""

    def __init__(self, message: str, status: Exit = Exit.BAD_INPUT) -> None:
        super().__init__(message, status)


@dataclasses.dataclass
class Column:
    name: str  # as written (sanitized)
    original: str
    values: list[str]  # cleaned cells ('' = missing), one per kept row

    @property
    def present(self) -> list[str]:
        return [v for v in self.values if v != ""]

    @property
    def kind(self) -> str:
        """INT, FLOAT or BYTES, as CsvExampleGen infers it from the written cells."""
        present = self.present
        if present and all(_INT.match(v) and abs(int(v)) < _INT64 for v in present):
            return "INT"
        if present and all(_FLOAT.match(v) for v in present):
            return "FLOAT"
        return "BYTES"


@dataclasses.dataclass
class Draft:
    """What init writes: the spec document, the schema, the cleaned CSV, and what it did."""

    name: str
    spec: dict
    schema_text: str
    header: list[str]
    rows: list[list[str]]
    warnings: list[str]
    # Comment lines per evaluation key: the baseline evidence behind each bar.
    threshold_notes: dict[str, list[str]] = dataclasses.field(default_factory=dict)


def feature_name(raw: str, index: int) -> str:
    """A column name usable as a tf.Example key, a Keras input and a SavedModel input name:
    lower-case ASCII letters, digits and underscores, starting with a letter."""
    name = re.sub(r"[^a-z0-9]+", "_", raw.strip().lower()).strip("_")
    if not name:
        name = f"column_{index + 1}"
    if not name[0].isalpha():
        name = f"c_{name}"
    return name[:64]


def _cell(value: str) -> str:
    value = " ".join(value.split())  # one line: CsvExampleGen reads a CSV line by line
    return "" if value.lower() in MISSING_TOKENS else value


def read_csv(path: str | os.PathLike) -> tuple[list[str], list[list[str]]]:
    """Header and rows; InitError when the file cannot be read as a CSV with data."""
    try:
        size = os.path.getsize(path)
        if size > MAX_CSV_BYTES:
            raise InitError(f"{path} is {size} bytes: more than init reads ({MAX_CSV_BYTES})")
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        missing = Exit.INPUT_MISSING if isinstance(e, FileNotFoundError) else Exit.BAD_INPUT
        raise InitError(f"cannot read {path}: {e.strerror or e}", missing) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InitError(f"{path} is not UTF-8 text (byte {e.start})") from None
    if "\x00" in text:
        raise InitError(f"{path} is not a CSV file (it holds NUL bytes)")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        lines = [row for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as e:
        raise InitError(f"{path} is not a readable CSV (line {reader.line_num}): {e}") from None
    if not lines:
        raise InitError(f"{path} is empty: expected a header row and data rows")
    header, rows = lines[0], lines[1:]
    if not rows:
        raise InitError(f"{path} has a header but no data rows")
    return header, rows


def _columns(header: list[str], rows: list[list[str]], path) -> list[Column]:
    names = [feature_name(h, i) for i, h in enumerate(header)]
    seen: dict[str, str] = {}
    for name, original in zip(names, header, strict=True):
        if name in seen:
            raise InitError(
                f"{path}: columns {seen[name]!r} and {original!r} both become feature {name!r}: "
                "rename one"
            )
        seen[name] = original
    width = len(header)
    for line, row in enumerate(rows, start=2):
        if len(row) != width:
            raise InitError(f"{path}: data row {line - 1} has {len(row)} values, expected {width}")
    return [
        Column(name, original, [_cell(row[i]) for row in rows])
        for i, (name, original) in enumerate(zip(names, header, strict=True))
    ]


def _label_column(columns: list[Column], label: str, path) -> Column:
    for c in columns:
        if label in (c.original, c.original.strip(), c.name):
            return c
    shown = ", ".join(repr(c.original) for c in columns[:10])
    more = ", ..." if len(columns) > 10 else ""
    raise InitError(f"{path} has no label column {label!r} (columns: {shown}{more})")


def _task(label: Column, task: str | None) -> str:
    values = label.present
    distinct = sorted(set(values))
    kind = label.kind
    if not values:
        raise InitError(f"label column {label.original!r} is empty")
    if len(distinct) < 2:
        raise InitError(
            f"label column {label.original!r} has one value ({distinct[0]!r}): nothing to learn"
        )
    if task is None:
        if kind == "FLOAT":
            task = REGRESSION
        elif len(distinct) == 2:
            task = BINARY
        elif kind == "INT" and len(distinct) > MAX_INT_CLASSES:
            task = REGRESSION
        else:
            task = MULTICLASS
    if task == REGRESSION and kind == "BYTES":
        raise InitError(f"label column {label.original!r} holds text: it cannot be regressed")
    if task == BINARY and len(distinct) != 2:
        raise InitError(
            f"label column {label.original!r} has {len(distinct)} values: binary needs exactly 2"
        )
    if task == MULTICLASS and len(distinct) > MAX_CLASSES:
        raise InitError(
            f"label column {label.original!r} has {len(distinct)} values: more than "
            f"{MAX_CLASSES} classes (use --task regression for a number)"
        )
    return task


def _classes(label: Column, task: str) -> list[str]:
    if task == REGRESSION:
        return []
    distinct = set(label.present)
    if label.kind == "INT":
        return [str(v) for v in sorted(int(v) for v in distinct)]
    return sorted(distinct)


def _role(column: Column, rows: int) -> str:
    present = column.present
    distinct = set(present)
    if len(distinct) <= 1:
        return "unused"
    kind = column.kind
    if kind == "BYTES":
        if len(distinct) == len(present) and rows >= MIN_ROWS_FOR_IDENTIFIER:
            return "unused"
        return "vocabulary"
    if kind == "INT":
        numbers = [int(v) for v in distinct]
        if min(numbers) >= 0 and max(numbers) <= MAX_CATEGORICAL_ID:
            return "categorical"
    return "numeric"


def _statistics(columns: list[Column]):
    """TFDV statistics of the typed columns (in memory, as StatisticsGen computes them)."""
    import pyarrow as pa

    arrays, names = [], []
    for c in columns:
        kind = c.kind
        if kind == "INT":
            typed, arrow = [[int(v)] if v else None for v in c.values], pa.int64()
        elif kind == "FLOAT":
            typed, arrow = [[float(v)] if v else None for v in c.values], pa.float32()
        else:
            typed, arrow = [[v.encode()] if v else None for v in c.values], pa.binary()
        arrays.append(pa.array(typed, type=pa.list_(arrow)))
        names.append(c.name)
    batch = pa.RecordBatch.from_arrays(arrays, names)
    return statistics_in_memory(batch)


def _schema_text(columns: list[Column], label: Column, task: str) -> str:
    import tensorflow_data_validation as tfdv

    schema = tfdv.infer_schema(_statistics(columns), infer_feature_shape=False)
    incomplete = {c.name for c in columns if len(c.present) < len(c.values)}
    for feature in schema.feature:
        if feature.name in incomplete:
            # CsvExampleGen writes an empty cell as a feature with no value, not as no feature.
            feature.value_count.ClearField("min")
        if feature.name == label.name:
            # Requests carry no label; every training row has one.
            feature.not_in_environment.append("SERVING")
            feature.presence.min_fraction = 1.0
    schema.default_environment.extend(["TRAINING", "SERVING"])
    header = (
        f"# Draft schema of the {task} dataset written by `mlops dataset init` from TFDV's\n"
        "# inference: review it (domains, value ranges, presence, drift/skew comparators;\n"
        "# docs/datasets.md) before trusting the data gate with it.\n"
    )
    return header + text_format.MessageToString(schema)


def draft(name: str, csv_path: str | os.PathLike, label: str, task: str | None = None) -> Draft:
    """Everything init would write, computed in memory; InitError says why it cannot."""
    if not dataset_spec.NAME_PATTERN.match(name):
        raise InitError(
            f"dataset name {name!r} must be lower-case letters, digits and underscores, "
            "starting with a letter",
            Exit.FAILED,
        )
    if task is not None and task not in TASKS:
        raise InitError(f"--task must be one of {', '.join(TASKS)}, not {task!r}", Exit.FAILED)
    header, rows = read_csv(csv_path)
    columns = _columns(header, rows, csv_path)
    label_column = _label_column(columns, label, csv_path)
    warnings = []
    renamed = [f"{c.original!r} -> {c.name}" for c in columns if c.original != c.name]
    if renamed:
        warnings.append("column names made usable as feature names: " + ", ".join(renamed))
    empty = [c for c in columns if c is not label_column and not c.present]
    if empty:
        warnings.append(
            "dropped all-empty column(s): " + ", ".join(repr(c.original) for c in empty)
        )
    columns = [c for c in columns if c not in empty]
    # Rows without a label cannot be trained on or evaluated.
    keep = [i for i, v in enumerate(label_column.values) if v != ""]
    if label_column.present and len(keep) < len(rows):
        warnings.append(f"dropped {len(rows) - len(keep)} row(s) without a label")
        for c in columns:
            c.values = [c.values[i] for i in keep]
    task = _task(label_column, task)
    classes = _classes(label_column, task)

    roles: dict[str, list] = collections.defaultdict(list)
    categorical: dict[str, int] = {}
    for c in columns:
        if c is label_column:
            continue
        role = _role(c, len(keep))
        if role == "categorical":
            categorical[c.name] = max(int(v) for v in c.present) + 1
        else:
            roles[role].append(c.name)
    if not (roles["numeric"] or roles["vocabulary"] or categorical):
        raise InitError(
            f"{csv_path}: no column besides the label is usable as a model input "
            "(all constant, empty or identifiers)"
        )
    if roles["unused"]:
        warnings.append(
            "not model inputs (constant or identifier-like): " + ", ".join(roles["unused"])
        )

    role_of = {name: role for role, names in roles.items() for name in names}
    role_of.update({name: "categorical" for name in categorical})
    thresholds, threshold_notes = _thresholds(
        task, baseline_evidence(columns, label_column, role_of, task, classes)
    )
    label_doc: dict = {"name": label_column.name}
    if classes:
        label_doc["classes"] = classes
    features: dict = {}
    if roles["numeric"]:
        features["numeric"] = roles["numeric"]
    if categorical:
        features["categorical"] = categorical
    if roles["vocabulary"]:
        features["vocabulary"] = {"top_k": 1000, "oov_buckets": 10, "keys": roles["vocabulary"]}
    if roles["unused"]:
        features["unused"] = roles["unused"]
    spec = {
        "name": name,
        "description": f"Initialised by `mlops dataset init` from {Path(csv_path).name}.",
        "source": {"data_root": f"../../data/{name}", "input_pattern": "span-{SPAN}/*.csv"},
        "task": task,
        "label": label_doc,
        "features": features,
        "slices": [],
        "evaluation": thresholds,
        "drift": {"alpha": 0.001, "min_distance": 0.03},
    }
    return Draft(
        name,
        spec,
        _schema_text(columns, label_column, task),
        [c.name for c in columns],
        [list(r) for r in zip(*(c.values for c in columns), strict=True)],
        warnings,
        threshold_notes,
    )


# The draft's evaluation bars come from baselines fitted on the CSV itself: K-fold cross-
# validation, whose folds (a fifth of the rows each) are the size of the pipeline's eval split
# (train:eval 4:1), so the spread between folds is the noise an eval split's metric has.
CV_FOLDS = 5
# How many fold standard deviations a bar leaves below (above, for MSE) the linear baseline's mean.
NOISE_SDS = 2.0
# Rows the cross-validation reads at most (a deterministic spread-out sample of bigger files).
MAX_CV_ROWS = 20_000
# Most one-hot columns a text or categorical column contributes (its most frequent values).
MAX_ONE_HOT = 50
# The least-squares baseline's ridge (classification: the pipeline's fit, LOGISTIC_RIDGE).
RIDGE = 1e-3


@dataclasses.dataclass(frozen=True)
class BaselineEvidence:
    """What the CSV says a model must beat, on the task's headline metrics: the constant
    predictor's value and the linear model's cross-validated mean and fold standard deviation."""

    metric: str
    constant: float
    linear_mean: float
    linear_sd: float
    rows: int
    folds: int


def _design(columns: list[Column], roles: dict[str, str], rows: list[int]):
    """The linear baseline's inputs for `rows`: z-scored numerics (missing -> 0), one-hot
    categoricals and text (their MAX_ONE_HOT most frequent values), and a constant 1."""
    import numpy as np

    parts = [np.ones([len(rows), 1])]
    for c in columns:
        role = roles.get(c.name)
        values = [c.values[i] for i in rows]
        if role == "numeric":
            present = np.array([float(v) for v in values if v != ""])
            mean = present.mean() if present.size else 0.0
            std = present.std() if present.size and present.std() > 0 else 1.0
            x = np.array([(float(v) - mean) / std if v != "" else 0.0 for v in values])
            parts.append(x.reshape(-1, 1))
        elif role in ("categorical", "vocabulary"):
            top = [v for v, _ in collections.Counter(values).most_common(MAX_ONE_HOT)]
            index = {v: i for i, v in enumerate(top)}
            x = np.zeros([len(rows), len(top)])
            for r, v in enumerate(values):
                if v in index:
                    x[r, index[v]] = 1.0
            parts.append(x)
    return np.hstack(parts)


def _fit_predict(task: str, classes: int, x_train, y_train, x_test):
    """Least squares (regression) or the pipeline's own logistic/softmax baseline fit
    (modules.baselines.fit_linear_classifier); the predictions on x_test (values, or class
    probabilities [n, classes]). Column 0 of the design is the constant 1 (not penalised)."""
    import numpy as np
    from scipy.special import expit, softmax

    from modules.baselines import fit_linear_classifier

    if task == REGRESSION:
        ridge = RIDGE * np.eye(x_train.shape[1])
        ridge[0, 0] = 0.0
        w = np.linalg.solve(x_train.T @ x_train + len(x_train) * ridge, x_train.T @ y_train)
        return x_test @ w
    kernel, bias = fit_linear_classifier(x_train[:, 1:], y_train, classes)
    logits = x_test[:, 1:] @ kernel + bias
    if classes == 2:
        positive = expit(logits[:, 0])
        return np.stack([1.0 - positive, positive], axis=1)
    return softmax(logits, axis=1)


def baseline_evidence(
    columns: list[Column], label: Column, roles: dict[str, str], task: str, classes: list[str]
) -> list[BaselineEvidence]:
    """The constant's and the cross-validated linear model's headline metrics on the CSV:
    MSE (regression), AUC and accuracy (binary), accuracy (multiclass)."""
    import numpy as np

    from modules.baselines import auc

    n = len(label.values)
    step = max(1, n // MAX_CV_ROWS)
    rows = list(range(0, n, step))[:MAX_CV_ROWS]
    if task == REGRESSION:
        y = np.array([float(label.values[i]) for i in rows])
    else:
        ids = {name: i for i, name in enumerate(classes)}
        y = np.array(
            [
                ids[str(int(v)) if label.kind == "INT" else v]
                for v in (label.values[i] for i in rows)
            ]
        )
    x = _design([c for c in columns if c is not label], roles, rows)
    folds = np.random.default_rng(0).permutation(len(rows)) % CV_FOLDS
    scores: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    for k in range(CV_FOLDS):
        train, test = folds != k, folds == k
        if not test.any() or not train.any():
            continue
        predicted = _fit_predict(task, len(classes), x[train], y[train], x[test])
        y_test = y[test]
        if task == REGRESSION:
            mean = y[train].mean()
            scores["mean_squared_error"].append(
                (float(np.mean((y_test - mean) ** 2)), float(np.mean((y_test - predicted) ** 2)))
            )
            continue
        majority = np.bincount(y[train].astype(int), minlength=len(classes)).argmax()
        accuracy = float(np.mean(predicted.argmax(axis=1) == y_test))
        scores["accuracy"].append((float(np.mean(y_test == majority)), accuracy))
        if task == BINARY:
            scores["auc"].append((0.5, auc(y_test, predicted[:, 1])))
    evidence = []
    for metric, pairs in scores.items():
        constant, linear = np.array(pairs).T
        evidence.append(
            BaselineEvidence(
                metric,
                float(constant.mean()),
                float(linear.mean()),
                float(linear.std(ddof=1)) if len(linear) > 1 else 0.0,
                len(rows),
                len(pairs),
            )
        )
    return evidence


def _round(value: float) -> float:
    return float(f"{value:.4g}")


def _thresholds(task: str, evidence: list[BaselineEvidence]) -> tuple[dict, dict[str, list[str]]]:
    """Draft blessing bars relative to the baselines the CSV supports, and for each key the
    comment lines that say where its value comes from.

    Value bars: the linear baseline's cross-validated metric less NOISE_SDS fold standard
    deviations (never below what the constant predictor scores): a model that does worse on
    the eval split is worse than a linear model beyond noise. The run itself also trains both
    baselines on its own split and exports the linear model when the candidate does not beat
    it (modules/baselines.py); these bars catch what is wrong with both. Plus: beat the latest
    blessed model."""
    by_metric = {e.metric: e for e in evidence}
    values: dict[str, float] = {}
    notes: dict[str, list[str]] = {}

    def note(e: BaselineEvidence, bar: float, bound: str) -> list[str]:
        return [
            f"constant predictor {e.constant:.4g}; linear model {e.linear_mean:.4g} +- "
            f"{e.linear_sd:.4g} ({e.folds}-fold CV on {e.rows} rows of the CSV)",
            f"bar: linear {bound} {NOISE_SDS:g} fold SDs (the eval split's noise), "
            f"no worse than the constant: {bar:.4g}",
        ]

    if task == REGRESSION:
        e = by_metric["mean_squared_error"]
        bar = _round(min(e.constant, e.linear_mean + NOISE_SDS * e.linear_sd))
        values["max_mse"] = bar
        notes["max_mse"] = note(e, bar, "MSE plus")
        values["max_mse_increase"] = -1e-10
        notes["max_mse_increase"] = ["push only a model with a lower MSE than the served one"]
        return values, notes
    e = by_metric["accuracy"]
    bar = _round(max(e.constant, e.linear_mean - NOISE_SDS * e.linear_sd))
    if task == BINARY:
        a = by_metric["auc"]
        auc_bar = _round(max(0.5, a.linear_mean - NOISE_SDS * a.linear_sd))
        values["min_auc"] = auc_bar
        notes["min_auc"] = note(a, auc_bar, "AUC less")
    values["min_accuracy"] = bar
    notes["min_accuracy"] = note(e, bar, "accuracy less")
    gain = "min_auc_gain" if task == BINARY else "min_accuracy_gain"
    values[gain] = 1e-10
    metric = "AUC" if task == BINARY else "accuracy"
    notes[gain] = [f"push only a model with a higher {metric} than the served one"]
    return values, notes


def _evaluation_yaml(values: dict, notes: dict[str, list[str]]) -> str:
    """The spec's `evaluation` mapping with each bar's evidence as comments above it."""
    import yaml

    lines = [
        "# Blessing bars from baselines fitted on this CSV (not from the label's spread): every",
        "# run also trains a constant and a linear model on its own split and pushes the",
        "# candidate only when it beats the linear one beyond the eval noise (docs/models.md).",
        "evaluation:",
    ]
    for key, value in values.items():
        lines += [f"  # {line}" for line in notes.get(key, [])]
        lines.append("  " + yaml.safe_dump({key: value}, default_flow_style=False).strip())
    return "\n".join(lines) + "\n"


SPEC_HEADER = (
    "# Draft dataset spec written by `mlops dataset init`: review the task, the label, each\n"
    "# column's role and the evaluation bars (reference: docs/datasets.md), then run\n"
    "#   python runners/local_runner.py --dataset {name}\n"
)


def spec_text(name: str, spec: dict, notes: dict[str, list[str]]) -> str:
    """The dataset.yaml text: the spec in its key order, the evaluation bars commented."""
    import yaml

    text = SPEC_HEADER.format(name=name)
    for key, value in spec.items():
        if key == "evaluation":
            text += _evaluation_yaml(value, notes)
        else:
            text += yaml.safe_dump({key: value}, sort_keys=False, allow_unicode=True)
    return text


def write(draft_: Draft, datasets_dir: Path, data_dir: Path, force: bool = False) -> Path:
    """Write the spec, schema and span-1 CSV; return the spec's path. Nothing is written when
    the dataset or its data already exist (unless `force`)."""

    spec_dir = datasets_dir / draft_.name
    data_root = data_dir / draft_.name
    for existing in (spec_dir, data_root):
        if existing.exists() and not force:
            raise InitError(
                f"{existing} already exists: pick another name or pass --force", Exit.REJECTED
            )
    spec = dict(draft_.spec)
    relative = os.path.relpath(data_root, spec_dir)
    spec["source"] = {**spec["source"], "data_root": relative}
    staging = Path(tempfile.mkdtemp(prefix=f".init-{draft_.name}-", dir=datasets_dir))
    try:
        (staging / dataset_spec.SPEC_FILE).write_text(
            spec_text(draft_.name, spec, draft_.threshold_notes), encoding="utf-8"
        )
        (staging / dataset_spec.SCHEMA_FILE).write_text(draft_.schema_text, encoding="utf-8")
        span = data_root / "span-1"
        if force:
            shutil.rmtree(span, ignore_errors=True)
        span.mkdir(parents=True, exist_ok=True)
        with open(span / "data.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(draft_.header)
            writer.writerows(draft_.rows)
        if force:
            shutil.rmtree(spec_dir, ignore_errors=True)
        os.rename(staging, spec_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # The written spec must load: a draft the pipeline cannot read is a bug here, not the user's.
    dataset_spec.load(spec_dir)
    return spec_dir / dataset_spec.SPEC_FILE


def init(
    name: str,
    csv_path: str | os.PathLike,
    label: str,
    task: str | None = None,
    datasets_dir: str | os.PathLike = dataset_spec.DATASETS_DIR,
    data_dir: str | os.PathLike | None = None,
    force: bool = False,
) -> tuple[Path, Draft]:
    """Draft and write a dataset; InitError (one line) when it cannot."""
    datasets_dir = Path(datasets_dir)
    data_dir = Path(data_dir) if data_dir else dataset_spec.PROJECT_ROOT / "data"
    d = draft(name, csv_path, label, task)
    datasets_dir.mkdir(parents=True, exist_ok=True)
    return write(d, datasets_dir, data_dir, force), d
