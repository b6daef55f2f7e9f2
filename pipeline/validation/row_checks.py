"""Row-level checks of one tf.Example against the curated schema: what the RowCleaner quarantines.

Why per row: TFDV judges a split by its statistics, so a few bad rows would stop the run
(docs/design.md, "Row-level checks"); these set them aside with a reason:

    missing_value     a required feature (presence min_fraction 1, or a fixed shape) has no value
    wrong_type        a value that does not parse as the schema's type (text in an INT column, 2.5
                      or 1e30 for an INT, bytes that are no number for a FLOAT)
    too_many_values   more values than the schema's value_count max / shape allows
    out_of_domain     a string outside the feature's string_domain (or bool_domain)
    out_of_range      a number outside int_domain / float_domain min..max, or a float that is not a
                      valid value at all (NaN, +-inf, beyond float32: modules/values.py), whatever
                      the domain says: the model cannot train on it

A clean row is returned with every schema feature in the schema's type (an int-valued cell of a
column CSV inference made BYTES becomes int64 again), so the column is uniform downstream. Only
features the schema applies in the TRAINING environment and that are not deprecated/disabled are
checked; features the schema does not know pass through untouched (ExampleValidator reports new
columns).
"""

from __future__ import annotations

import dataclasses
import math

from tensorflow.core.example import example_pb2
from tensorflow_metadata.proto.v0 import schema_pb2

from modules import values as valid_values

MISSING_VALUE = "missing_value"
WRONG_TYPE = "wrong_type"
TOO_MANY_VALUES = "too_many_values"
OUT_OF_DOMAIN = "out_of_domain"
OUT_OF_RANGE = "out_of_range"
REASONS = (MISSING_VALUE, WRONG_TYPE, TOO_MANY_VALUES, OUT_OF_DOMAIN, OUT_OF_RANGE)
# The feature name a violation of the whole row carries (a record that is no tf.Example).
ROW = "<row>"
TRAINING = "TRAINING"

_KINDS = {
    schema_pb2.INT: "int64_list",
    schema_pb2.FLOAT: "float_list",
    schema_pb2.BYTES: "bytes_list",
}
_SKIPPED_STAGES = {
    schema_pb2.DEPRECATED,
    schema_pb2.DISABLED,
    schema_pb2.PLANNED,
    schema_pb2.ALPHA,
    schema_pb2.DEBUG_ONLY,
}


@dataclasses.dataclass(frozen=True)
class Violation:
    """Why a row is quarantined: the feature, one of REASONS, and the offending detail."""

    feature: str
    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.feature}: {self.reason} ({self.detail})"


@dataclasses.dataclass(frozen=True)
class FeatureRule:
    """What the schema asks of one feature, flattened for a fast per-row check."""

    name: str
    kind: str  # int64_list, float_list or bytes_list
    required: bool
    max_values: int | None
    minimum: float | None = None
    maximum: float | None = None
    disallow_nan: bool = False
    disallow_inf: bool = False
    allowed: frozenset[bytes] | None = None  # string / bool domain values


def _in_environment(
    feature: schema_pb2.Feature, schema: schema_pb2.Schema, env: str | None
) -> bool:
    """TFDV's rule: in_environment wins, then not_in_environment, then default_environment."""
    if env is None:
        return True
    if feature.in_environment:
        return env in feature.in_environment
    if env in feature.not_in_environment:
        return False
    return not schema.default_environment or env in schema.default_environment


def _max_values(feature: schema_pb2.Feature) -> int | None:
    if feature.HasField("shape"):
        size = 1
        for dim in feature.shape.dim:
            size *= dim.size
        return size
    if feature.HasField("value_count") and feature.value_count.max > 0:
        return feature.value_count.max
    return None


def feature_rule(feature: schema_pb2.Feature, schema: schema_pb2.Schema) -> FeatureRule | None:
    """The rule for one schema feature (None: a type these checks do not cover, e.g. STRUCT)."""
    kind = _KINDS.get(feature.type)
    if kind is None:
        return None
    required = feature.presence.min_fraction >= 1.0 or (
        feature.HasField("shape") and all(d.size > 0 for d in feature.shape.dim)
    )
    rule = dict(name=feature.name, kind=kind, required=required, max_values=_max_values(feature))
    domain = feature.WhichOneof("domain_info")
    if domain == "domain":  # a reference to a top-level domain of the schema
        for field in ("string_domain", "int_domain", "float_domain"):
            for top in getattr(schema, field):
                if top.name == feature.domain:
                    return _with_domain(rule, field, top)
        return FeatureRule(**rule)
    if domain in ("string_domain", "int_domain", "float_domain", "bool_domain"):
        return _with_domain(rule, domain, getattr(feature, domain))
    return FeatureRule(**rule)


def _with_domain(rule: dict, field: str, domain) -> FeatureRule:
    if field == "string_domain":
        rule["allowed"] = frozenset(v.encode() for v in domain.value)
    elif field == "bool_domain":
        if rule["kind"] == "bytes_list":
            rule["allowed"] = frozenset(
                v.encode() for v in (domain.true_value or "true", domain.false_value or "false")
            )
        else:
            rule["minimum"], rule["maximum"] = 0, 1
    elif field == "int_domain":
        rule["minimum"] = domain.min if domain.HasField("min") else None
        rule["maximum"] = domain.max if domain.HasField("max") else None
    elif field == "float_domain":
        rule["minimum"] = domain.min if domain.HasField("min") else None
        rule["maximum"] = domain.max if domain.HasField("max") else None
        rule["disallow_nan"] = domain.disallow_nan
        rule["disallow_inf"] = domain.disallow_inf
    return FeatureRule(**rule)


def rules_from_schema(schema: schema_pb2.Schema, environment: str | None = TRAINING) -> list:
    """One FeatureRule per schema feature that applies in `environment` (None: every feature)."""
    if environment is not None and not _mentions(schema, environment):
        environment = None
    rules = []
    for feature in schema.feature:
        if feature.lifecycle_stage in _SKIPPED_STAGES:
            continue
        if not _in_environment(feature, schema, environment):
            continue
        rule = feature_rule(feature, schema)
        if rule is not None:
            rules.append(rule)
    return rules


def _mentions(schema: schema_pb2.Schema, env: str) -> bool:
    return env in schema.default_environment or any(
        env in f.in_environment or env in f.not_in_environment for f in schema.feature
    )


def _convert(values, kind: str, rule: FeatureRule) -> tuple[list | None, str]:
    """`values` (of tf.Example kind `kind`) as the rule's kind, or (None, why not)."""
    out = []
    for v in values:
        if rule.kind == "int64_list":
            if kind == "float_list":
                if not math.isfinite(v) or v != int(v):
                    return None, f"{v!r} is not an integer"
                n = int(v)
            else:
                text = v.decode("utf-8", "replace").strip()
                try:
                    n = int(text)
                except ValueError:
                    return None, f"{_show(v)} is not an integer"
            problem = valid_values.int_problem(n)
            if problem:
                return None, problem
            out.append(n)
        elif rule.kind == "float_list":
            if kind == "int64_list":
                out.append(float(v))
                continue
            try:
                number = float(v.decode("utf-8", "replace").strip())
            except ValueError:
                return None, f"{_show(v)} is not a number"
            problem = valid_values.float_problem(number)
            if problem:  # 1e50 as text would become inf in the float_list
                return None, problem
            out.append(number)
        else:  # bytes from numbers: their text
            out.append(str(v).encode())
    return out, ""


def _show(value, limit: int = 40) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RowChecker:
    """Checks tf.Examples against one schema's rules. Never raises on a row: any input is either
    clean (returned, in the schema's types) or gets at least one Violation."""

    def __init__(self, schema: schema_pb2.Schema, environment: str | None = TRAINING):
        self.rules = rules_from_schema(schema, environment)
        self._schema_bytes = schema.SerializeToString()
        self._spec = None  # tf.io.parse_example's features, made on first use

    def check(self, example: example_pb2.Example) -> tuple[example_pb2.Example | None, list]:
        """(the clean example, []) or (None, violations). The example may be modified in place
        (values converted to the schema's types)."""
        violations = []
        features = example.features.feature
        for rule in self.rules:
            if rule.name in features:
                feature = features[rule.name]
                kind = feature.WhichOneof("kind")
                values = getattr(feature, kind).value if kind else ()
            else:
                feature, kind, values = None, None, ()
            if kind is not None and kind != rule.kind:
                converted, why = _convert(values, kind, rule)
                if converted is None:
                    violations.append(Violation(rule.name, WRONG_TYPE, why))
                    continue
                feature.Clear()
                getattr(feature, rule.kind).value.extend(converted)
                values = getattr(feature, rule.kind).value
            elif kind is None and feature is not None:
                getattr(feature, rule.kind).SetInParent()  # an empty list of the schema's kind
            problem = _value_problem(rule, values)
            if problem is not None:
                violations.append(problem)
        return (None, violations) if violations else (example, [])

    def check_batch(self, records: list[bytes]) -> list[tuple[bytes | None, list]]:
        """check_serialized of each record, fast: the batch is parsed in C++ (suspects) and
        checked column by column with numpy; only rows that may violate the schema
        (or every row of a batch that does not decode with the schema's types) are checked one
        by one, which decides. A clean row passed by the fast path comes back as read (the
        bytes ExampleGen wrote, deterministically serialized already)."""
        suspect = self.suspects(records)
        return [
            self.check_serialized(r) if s else (r, [])
            for r, s in zip(records, suspect.tolist(), strict=True)
        ]

    def suspects(self, records: list[bytes]):
        """A boolean numpy mask of the rows that may violate a rule: the others are clean as
        read, so only these need check_serialized (every row, when the batch does not decode
        with the schema's types). This is the cleaner's per-row cost, so it stays in Arrow and
        numpy: a Python loop over the rows here would cost more than the decoding."""
        import numpy as np

        suspect = self._suspects(records)
        return np.ones(len(records), dtype=bool) if suspect is None else suspect

    def _suspects(self, records: list[bytes]):
        """A boolean mask of the rows that may violate a rule (None: the batch does not parse
        with the schema's kinds, e.g. a wrong kind somewhere, so every row needs the row-by-row
        check).

        The batch is parsed by TensorFlow's tf.io.parse_example (its C++ fast parser, several
        times faster than tfx_bsl's DecodeBatch to Arrow, which was most of the cleaner's time).
        That parser is more lenient than protobuf's (it takes a feature name that is not UTF-8,
        which protobuf refuses: "not a tf.Example"), so a row is passed only if protobuf parses
        it too; what protobuf refuses is a suspect, and check_serialized decides."""
        import numpy as np

        suspect = np.zeros(len(records), dtype=bool)
        parse = example_pb2.Example.FromString
        for i, record in enumerate(records):
            try:
                parse(record)
            except Exception:  # noqa: BLE001 - protobuf raises DecodeError or RuntimeError
                suspect[i] = True
        if not self.rules or not len(records):
            return suspect
        try:
            parsed = self._parse(records)
        except Exception:  # noqa: BLE001 - a wrong kind or a broken record somewhere in it
            return None
        for rule in self.rules:
            values, splits = parsed[rule.name]
            lengths = np.diff(splits)
            if rule.required:
                suspect |= lengths == 0
            if rule.max_values is not None:
                suspect |= lengths > rule.max_values
            if len(values) == 0:
                continue
            if rule.kind == "bytes_list":
                if rule.allowed is None:
                    continue
                allowed = rule.allowed
                bad = np.fromiter(
                    (v not in allowed for v in values.tolist()), dtype=bool, count=len(values)
                )
            else:
                bad = ~np.isfinite(values) if rule.kind == "float_list" else None
                if rule.minimum is not None:
                    low = values < rule.minimum
                    bad = low if bad is None else bad | low
                if rule.maximum is not None:
                    high = values > rule.maximum
                    bad = high if bad is None else bad | high
                if bad is None:
                    continue
            if bad.any():
                parents = np.repeat(np.arange(len(records)), lengths)
                suspect[parents[bad]] = True
        return suspect

    def _parse(self, records: list[bytes]) -> dict:
        """name -> (values, row splits) of each rule's feature, as numpy arrays."""
        import tensorflow as tf

        if self._spec is None:
            dtypes = {"int64_list": tf.int64, "float_list": tf.float32, "bytes_list": tf.string}
            self._spec = {
                rule.name: tf.io.RaggedFeature(dtypes[rule.kind], row_splits_dtype=tf.int64)
                for rule in self.rules
            }
        parsed = tf.io.parse_example(tf.constant(records, dtype=tf.string), self._spec)
        return {
            name: (ragged.values.numpy(), ragged.row_splits.numpy())
            for name, ragged in parsed.items()
        }

    def check_serialized(self, record: bytes) -> tuple[bytes | None, list]:
        """(the clean example serialized deterministically, []) or (None, violations)."""
        try:
            example = example_pb2.Example.FromString(record)
        except Exception:  # noqa: BLE001 - protobuf raises DecodeError or RuntimeError
            return None, [Violation(ROW, WRONG_TYPE, "not a tf.Example")]
        clean, violations = self.check(example)
        if clean is None:
            return None, violations
        return clean.SerializeToString(deterministic=True), []


def _value_problem(rule: FeatureRule, values) -> Violation | None:
    n = len(values)
    if n == 0:
        return Violation(rule.name, MISSING_VALUE, "required") if rule.required else None
    if rule.max_values is not None and n > rule.max_values:
        return Violation(rule.name, TOO_MANY_VALUES, f"{n} values, at most {rule.max_values}")
    if rule.allowed is not None and rule.kind == "bytes_list":
        for v in values:
            if v not in rule.allowed:
                return Violation(rule.name, OUT_OF_DOMAIN, f"{_show(v)} not in the domain")
        return None
    if rule.kind == "bytes_list":
        return None
    lo, hi = rule.minimum, rule.maximum
    for v in values:
        if rule.kind == "float_list":
            problem = valid_values.float_problem(v)
            if problem:  # NaN, +-inf: never a value to train on, domain or not
                return Violation(rule.name, OUT_OF_RANGE, problem)
        if lo is not None and v < lo:
            return Violation(rule.name, OUT_OF_RANGE, f"{_show(v)} < min {lo:g}")
        if hi is not None and v > hi:
            return Violation(rule.name, OUT_OF_RANGE, f"{_show(v)} > max {hi:g}")
    return None


def example_to_json(example: example_pb2.Example) -> dict:
    """A tf.Example's features as plain JSON values (bytes as text, NaN/inf as strings)."""
    out = {}
    for name in sorted(example.features.feature):
        feature = example.features.feature[name]
        kind = feature.WhichOneof("kind")
        values = list(getattr(feature, kind).value) if kind else []
        if kind == "bytes_list":
            values = [v.decode("utf-8", "backslashreplace") for v in values]
        elif kind == "float_list":
            values = [v if math.isfinite(v) else str(v) for v in values]
        out[name] = values
    return out
