"""The gradient-boosted-trees family through the whole pipeline: the Trainer trains and exports
TF-DF trees, the Evaluator's TFMA loads them (TF-DF's ops registered by its model loader), the
Pusher pushes them and the model server serves the pushed version."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import requests

from model_layout.custom_ops import needs_decision_forest_ops
from modules import dataset_spec
from modules.families import GRADIENT_BOOSTED_TREES
from pipeline import dataset_draft
from pipeline.config import EvalThresholds, dataset_config
from pipeline.local.run import run_pipeline
from serving_api.client import encode_example, read_rows
from tests import serving_models as sm
from tests.quality_samples import binary_csv

pytestmark = pytest.mark.slow


def test_a_forest_candidate_is_evaluated_pushed_and_served(tmp_path):
    source = binary_csv(tmp_path / "bin.csv", rows=300)
    spec_path, _ = dataset_draft.init(
        "bin", source, "label", datasets_dir=tmp_path / "ds", data_dir=tmp_path / "data"
    )
    # Any candidate "beats" the linear model (a margin of -1 AUC): the trees are exported and
    # pushed whatever this small draw's noise says, so the server gets them.
    spec_text = spec_path.read_text()
    assert "\nevaluation:\n" in spec_text
    spec_path.write_text(
        spec_text.replace("\nevaluation:\n", "\nevaluation:\n  linear_margin: -1.0\n")
    )
    config = dataset_config(
        spec_path,
        output_dir=str(tmp_path / "out"),
        serving_model_dir=str(tmp_path / "serving"),
        skip_tuning=True,
        model_families=(GRADIENT_BOOSTED_TREES,),
        thresholds=EvalThresholds(min_auc=0.5, min_accuracy=0.5),
    )
    exit_code, report = run_pipeline(config)
    assert exit_code == 0 and report is not None
    c = report.comparison
    assert c["candidate_family"] == GRADIENT_BOOSTED_TREES and c["exported"] == "candidate"
    assert c["candidate_wins"] and c["margin_source"].startswith("dataset spec")
    # TFMA scored the exported trees on the eval split: the same AUC the Trainer measured.
    assert report.metrics["auc"] == pytest.approx(c["scores"]["candidate"], abs=0.02)
    assert c["scores"]["candidate"] > 0.75  # a noisy linear rule: the linear model's ~0.93
    assert report.blessed and report.pushed_path, report.push_decision
    assert needs_decision_forest_ops(report.pushed_path)
    server = sm.ServerProcess(
        "--model_name=bin", f"--model_base_path={tmp_path / 'serving'}"
    ).wait_ready()
    try:
        rows = read_rows(str(source))[:10]
        spec = dataset_spec.load(str(spec_path))
        examples = [
            {
                "b64": base64.b64encode(
                    encode_example({k: v for k, v in r.items() if k != "label"}, spec)
                ).decode()
            }
            for r in rows
        ]
        r = requests.post(
            f"{server.rest_url}/v1/models/bin:predict", json={"instances": examples}, timeout=60
        )
        assert r.status_code == 200, r.text
        p = np.array(r.json()["predictions"]).reshape(-1)
        assert p.shape == (10,) and np.all((p >= 0) & (p <= 1))
    finally:
        server.stop()
