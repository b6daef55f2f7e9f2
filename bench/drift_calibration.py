"""Calibration of the drift gate: how far apart TFDV's comparators and the sample-size-aware
tests (data_stats/measures.py) put same-distribution samples, and whether they stop shifted
ones.

    python bench/drift_calibration.py [--samples 20] [--shifted-samples 10] \
        [--sizes 1000,3000,15000]

Every sample is drawn from span 1 (data/taxi/span-1/data.csv, 15,002 rows), encoded as the
tf.Examples CsvExampleGen writes, and its statistics come from TFDV with the pipeline's
StatisticsGen options; each is compared with span 1's statistics:

1. TFDV's comparators on every model feature (L-infinity for strings, Jensen-Shannon on the
   standard histograms for numerics, and on the quantiles histograms), exactly as
   tfdv.validate_statistics(previous_statistics=...) computes them: median and max over samples.
2. The gate as configured (schema comparators + drift_measures.FEATURE_TESTS, through
   data_stats.compare.compare_statistics, the DriftValidator's function): how many same-distribution
   samples it stops (false alarms) and how many shifted samples it stops on the shifted feature.
"""

from __future__ import annotations

import argparse
import collections
import csv
import random
import statistics
import sys
import time
from pathlib import Path

from data_stats import compare as drift
from data_stats import measures as drift_measures
from modules import features
from pipeline.config import PROJECT_ROOT
from pipeline.ingest.spans import schema_columns

SPAN_1 = PROJECT_ROOT / "data" / "taxi" / "span-1" / "data.csv"
SCHEMA = PROJECT_ROOT / "schema" / "schema.pbtxt"


def read_rows(path: Path = SPAN_1) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---- shifts: each returns new rows; the key is the feature that must be stopped ----------------
def _scale(key: str, factor: float, integer: bool = False):
    def shift(rows, rng):
        out = []
        for r in rows:
            r = dict(r)
            if r[key]:
                v = float(r[key]) * factor
                r[key] = str(int(round(v))) if integer else f"{v:.2f}"
            out.append(r)
        return out

    return shift


def _hour_shift(hours: int):
    def shift(rows, rng):
        return [
            dict(r, trip_start_hour=str((int(r["trip_start_hour"]) + hours) % 24)) for r in rows
        ]

    return shift


def _payment_mix(rows, rng):
    """Half of the card payments become cash."""
    return [
        dict(r, payment_type="Cash")
        if r["payment_type"] == "Credit Card" and rng.random() < 0.5
        else r
        for r in rows
    ]


def _new_payment_type(rows, rng):
    """One trip in ten paid with a type never seen before (also a schema anomaly)."""
    return [dict(r, payment_type="Mobile") if rng.random() < 0.1 else r for r in rows]


def _company_mix(rows, rng):
    """The largest company loses half of its trips to the smallest ones (existing names)."""
    counts = collections.Counter(r["company"] for r in rows if r["company"])
    ranked = [c for c, _ in counts.most_common()]
    top, small = ranked[0], ranked[len(ranked) // 2 :]
    return [
        dict(r, company=rng.choice(small)) if r["company"] == top and rng.random() < 0.5 else r
        for r in rows
    ]


def _fewer_downtown(rows, rng):
    """Two thirds of the trips starting in the Loop (community area 32) are gone."""
    return [r for r in rows if r["pickup_community_area"] != "32" or rng.random() < 1 / 3]


SHIFTS = {
    "fare x1.3": ("fare", _scale("fare", 1.3)),
    "trip_seconds x1.3": ("trip_seconds", _scale("trip_seconds", 1.3, integer=True)),
    "trip_miles x1.3": ("trip_miles", _scale("trip_miles", 1.3)),
    "hour +2": ("trip_start_hour", _hour_shift(2)),
    "hour +1": ("trip_start_hour", _hour_shift(1)),
    "card -> cash (half)": ("payment_type", _payment_mix),
    "new payment type (10%)": ("payment_type", _new_payment_type),
    "largest company -50%": ("company", _company_mix),
    "Loop pickups -2/3": ("pickup_community_area", _fewer_downtown),
}


# ---- measuring ---------------------------------------------------------------------------------
def calibration_schema(schema, source: str = "DEFAULT"):
    """The schema with a TFDV drift comparator on every model feature and thresholds that never
    fire, so validate_statistics reports every distance."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    out = schema_pb2.Schema()
    out.CopyFrom(schema)
    for f in out.feature:
        if f.name not in features.RAW_FEATURE_KEYS:
            f.ClearField("drift_comparator")
            continue
        f.ClearField("drift_comparator")
        if f.type == schema_pb2.BYTES:
            f.drift_comparator.infinity_norm.threshold = 1.0
        else:
            js = f.drift_comparator.jensen_shannon_divergence
            js.threshold = 1.0
            js.source.type = schema_pb2.HistogramSelection.Type.Value(source)
    return out


def tfdv_distances(base, new, schema) -> dict[str, float]:
    import tensorflow_data_validation as tfdv

    result = tfdv.validate_statistics(new, schema, previous_statistics=base)
    return {m.feature: m.distance for m in drift.measurements(result, "train")}


class Bench:
    def __init__(self, rows, seed: int) -> None:
        import tensorflow_data_validation as tfdv

        self.rows = rows
        self.columns = schema_columns(str(SCHEMA))
        self.schema = tfdv.load_schema_text(str(SCHEMA))
        self.js_standard = calibration_schema(self.schema, "STANDARD")
        self.js_quantiles = calibration_schema(self.schema, "QUANTILES")
        self.rng = random.Random(seed)
        self.base = self.stats(rows)

    def stats(self, rows):
        examples = drift_measures.examples_from_rows(rows, self.columns)
        return drift_measures.statistics_of_examples(examples)

    def sample(self, size: int, replace: bool):
        if replace:
            return [self.rng.choice(self.rows) for _ in range(size)]
        return self.rng.sample(self.rows, min(size, len(self.rows)))

    def measure(self, rows):
        """(TFDV standard-histogram distances, TFDV quantile-histogram JS, the gate's findings)."""
        new = self.stats(rows)
        _, gate = drift.compare_statistics(self.base, new, self.schema, "train")
        return (
            tfdv_distances(self.base, new, self.js_standard),
            tfdv_distances(self.base, new, self.js_quantiles),
            gate,
        )


def _fmt(values) -> str:
    return f"{statistics.median(values):.3f}/{max(values):.3f}" if values else "-"


def same_distribution(bench: Bench, sizes, samples: int):
    """Yields the table's lines, one cell (size and sampling) at a time."""
    for size in sizes:
        for replace in (False, True):
            if size >= len(bench.rows) and not replace:
                continue  # span 1 itself: distance 0
            label = f"{size} rows, {'with' if replace else 'without'} replacement"
            tfdv_std, tfdv_q, ours, thresholds = (collections.defaultdict(list) for _ in range(4))
            alarms = collections.Counter()
            stopped = 0
            schema_alarms = 0
            started = time.perf_counter()
            for _ in range(samples):
                std, q, gate = bench.measure(bench.sample(size, replace))
                for k, v in std.items():
                    tfdv_std[k].append(v)
                for k, v in q.items():
                    tfdv_q[k].append(v)
                fired = {m.feature for m in gate if m.exceeded}
                stopped += bool(fired)
                schema_alarms += any(
                    m.exceeded for m in gate if m.comparator not in drift_measures.TESTS
                )
                for m in gate:
                    if m.comparator in drift_measures.TESTS:
                        ours[m.feature].append(m.distance)
                        thresholds[m.feature].append(m.threshold)
                        alarms[m.feature] += m.exceeded
            yield (
                f"\n### Same distribution: {label} vs span 1 ({samples} samples, "
                f"{time.perf_counter() - started:.0f} s)\n"
            )
            yield (
                "| feature | TFDV L-inf or JS (std hist) median/max | TFDV JS (quantiles) "
                "median/max | test distance median/max | test threshold | false alarms |"
            )
            yield "|---|---|---|---|---|---|"
            for feature in sorted(set(tfdv_std) | set(ours)):
                yield (
                    f"| {feature} | {_fmt(tfdv_std[feature])} | {_fmt(tfdv_q[feature])} | "
                    f"{_fmt(ours[feature])} | "
                    f"{min(thresholds[feature], default=float('nan')):.3f} | "
                    f"{alarms[feature]}/{samples} |"
                )
            yield (
                f"\nGate (schema comparators + tests): stopped {stopped}/{samples} samples "
                f"(false-alarm rate {stopped / samples:.0%}); by the schema's TFDV comparators "
                f"alone: {schema_alarms}/{samples}."
            )


def shifted(bench: Bench, sizes, samples: int, names=None):
    """Yields the table's lines, one shift and size at a time."""
    yield f"\n### Shifted samples vs span 1 ({samples} per cell, drawn with replacement)\n"
    yield (
        "| shift | rows | detected (stopped on the shifted feature) | other features fired "
        "| test distance / threshold (median) | TFDV L-inf or JS median |"
    )
    yield "|---|---|---|---|---|---|"
    for name, (key, shift) in SHIFTS.items():
        if names and name not in names:
            continue
        for size in sizes:
            detected, others = 0, collections.Counter()
            dist, thr, tfdv_v = [], [], []
            for _ in range(samples):
                std, _q, gate = bench.measure(shift(bench.sample(size, True), bench.rng))
                fired = {m.feature for m in gate if m.exceeded}
                detected += key in fired
                others.update(fired - {key})
                for m in gate:
                    if m.feature == key and m.comparator in drift_measures.TESTS:
                        dist.append(m.distance)
                        thr.append(m.threshold)
                if key in std:
                    tfdv_v.append(std[key])
            other = ", ".join(f"{k} {v}" for k, v in others.most_common()) or "none"
            yield (
                f"| {name} | {size} | {detected}/{samples} | {other} | "
                f"{statistics.median(dist):.3f} / {statistics.median(thr):.3f} | "
                f"{statistics.median(tfdv_v) if tfdv_v else float('nan'):.3f} |"
            )


def main(argv=None) -> int:
    # Here, not at the top: tests import this file as a module (bench.drift_calibration), where
    # bench/ is not on sys.path (run as `python bench/<this>.py`, it is first).
    import _argtypes as argtypes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=argtypes.whole(1), default=20)
    parser.add_argument("--shifted-samples", type=argtypes.whole(1), default=10)
    parser.add_argument("--sizes", type=argtypes.row_counts, default="1000,3000,15000")
    parser.add_argument("--seed", type=argtypes.whole(0), default=11)
    parser.add_argument("--only", choices=["same", "shifted"], default=None)
    parser.add_argument(
        "--shifts",
        type=argtypes.names(SHIFTS, allow_empty=True),
        default="",
        help="comma-separated shift names (default: all)",
    )
    args = parser.parse_args(argv)
    sizes = args.sizes
    bench = Bench(read_rows(), args.seed)
    if args.only != "shifted":
        for line in same_distribution(bench, sizes, args.samples):
            print(line, flush=True)
    if args.only != "same":
        for line in shifted(bench, sizes, args.shifted_samples, args.shifts):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
