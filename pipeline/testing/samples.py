"""Small samples of the taxi data and smoke-sized pipeline configs: the test suite's shared
fixtures and the benchmarks' small stores are built from these."""

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
        # Enough for the committed hyperparameters (learning rate 0.001) to learn on the 400-row
        # sample: at 30 steps the eval AUC ranged 0.44-0.79 between runs, at 150 0.82-0.85.
        train_steps=150,
        eval_steps=5,
        tuner_trials=1,
        tuner_train_steps=10,
        tuner_eval_steps=2,
        thresholds=EvalThresholds(min_auc=0.5, min_accuracy=0.5),
    )
    settings.update(overrides)
    return PipelineConfig(**settings)
