"""Small samples of the taxi data and test-sized pipeline configs, shared by every slow test."""

from __future__ import annotations

import csv
from pathlib import Path

from pipeline.config import PROJECT_ROOT, EvalThresholds, PipelineConfig

TAXI_CSV = PROJECT_ROOT / "data" / "taxi" / "span-1" / "data.csv"
SMALL_SAMPLE_ROWS = 400


def write_sample(dest: Path, rows: int = SMALL_SAMPLE_ROWS, start: int = 0) -> Path:
    """Every k-th row of span 1 (a spread-out, deterministic sample) as data root span-1."""
    with open(TAXI_CSV, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        all_rows = list(reader)
    step = max(1, len(all_rows) // rows)
    sample = all_rows[start::step][:rows]
    out = dest / "span-1" / "data.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(sample)
    return dest


def small_config(root: Path, data_root: Path, **overrides) -> PipelineConfig:
    """Settings for test runs: tiny training and search, lenient value thresholds (the
    better-than-baseline rule stays as in production)."""
    settings = dict(
        pipeline_name="taxi_small",
        data_root=str(data_root),
        output_dir=str(root / "out"),
        serving_model_dir=str(root / "serving_model" / "taxi"),
        train_steps=30,
        eval_steps=5,
        tuner_trials=1,
        tuner_train_steps=10,
        tuner_eval_steps=2,
        thresholds=EvalThresholds(min_auc=0.5, min_accuracy=0.5),
    )
    settings.update(overrides)
    return PipelineConfig(**settings)


def trained_span(store, report) -> int:
    """Span of the examples behind the run's Trainer input, traced through MLMD events (a
    cached Trainer re-publishes the model it reused, so this works for cached runs too)."""
    from metadata.store import span_of

    trainer = next(c.execution_id for c in report.components if c.node_id == "Trainer")
    [transformed] = store.inputs(trainer)["examples"]
    transform = store.producers([transformed.id])[transformed.id][0]
    [examples] = store.inputs(transform)["examples"]
    return span_of(examples)
