"""Per-prediction attributions as the Predict page computes them (apps/ui/server.explain_one):
through a real `mlops serve` process serving a real SavedModel with known weights
(serving/testing.py: sigmoid(0.001 * trip_miles + 0.002 * fare + 0.003 * trip_seconds + bias),
every other input ignored), over REST and gRPC, in one predict request."""

from __future__ import annotations

import math

import pytest

from apps.ui import server
from explain import shapley
from serving_api.client import RestClient, predict_rows
from tests import serving_models as sm

BIAS = -2.0
WEIGHTS = {"trip_miles": 0.001, "fare": 0.002, "trip_seconds": 0.003}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("explain") / "taxi"
    sm.build_model(base / "1", bias=BIAS)
    process = sm.ServerProcess("--model_name=taxi", f"--model_base_path={base}").wait_ready()
    yield process
    process.stop()


def _f(row) -> float:
    logit = BIAS + sum(w * float(row[k]) for k, w in WEIGHTS.items())
    return 1.0 / (1.0 + math.exp(-logit))


def _predict_requests(process) -> float:
    """Predict requests the server counted (the REST client also asks for metadata once)."""
    counts = server.scrape("127.0.0.1", process.rest_port).requests
    return float(counts.loc[counts["method"] == "predict", "count"].sum())


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_attributions_have_the_signs_of_the_known_weights_and_sum_to_the_change(served, protocol):
    baseline = dict(sm.SAMPLE_ROW)
    row = {
        **baseline,
        "trip_miles": 900.0,  # up: pushes the probability up
        "fare": 2.0,  # down from 7.25: pushes it down
        "payment_type": "Cash",  # the model ignores it
        "trip_start_hour": 3,  # ignored too
    }
    port = served.grpc_port if protocol == "grpc" else served.rest_port
    before = _predict_requests(served)
    why = server.explain_one(row, baseline, protocol, "127.0.0.1", port, "taxi", version=1)
    assert _predict_requests(served) == before + 1  # every path row in ONE predict request
    a = why.as_dict()
    assert a["trip_miles"] > 0 > a["fare"]
    unchanged_or_ignored = [k for k in a if k not in ("trip_miles", "fare")]
    # Zero up to float32 rounding (rows scored in batches of different sizes differ in the last
    # bits).
    assert all(abs(a[k]) < 1e-6 for k in unchanged_or_ignored), {k: a[k] for k in a if a[k]}
    # The sum rule, against the model's own formula and against the server's answers.
    assert why.prediction == pytest.approx(_f(row), abs=1e-6)
    assert why.baseline_prediction == pytest.approx(_f(baseline), abs=1e-6)
    assert why.total == pytest.approx(why.prediction - why.baseline_prediction, abs=1e-9)
    direct = predict_rows(RestClient("127.0.0.1", served.rest_port), "taxi", [row, baseline])
    assert why.total == pytest.approx(
        direct[0]["probabilities"][0] - direct[1]["probabilities"][0], abs=1e-6
    )
    n = len(a)
    assert why.rows_scored == shapley.DEFAULT_PERMUTATIONS * (n - 1) + 2


def test_the_table_lists_the_largest_effect_first(served):
    baseline = dict(sm.SAMPLE_ROW)
    row = {**baseline, "trip_miles": 30.0, "fare": 300.0}
    why = server.explain_one(row, baseline, "rest", "127.0.0.1", served.rest_port, "taxi")
    table = server.attribution_frame(why, row, baseline)
    assert list(table.columns) == ["feature", "value", "baseline", "attribution"]
    assert list(table["feature"][:2]) == ["fare", "trip_miles"]
    assert table["attribution"].iloc[0] > table["attribution"].iloc[1] > 0
    assert table.iloc[0]["value"] == "300.0" and table.iloc[0]["baseline"] == "7.25"


def test_a_server_that_does_not_answer_is_a_message(served):
    row = dict(sm.SAMPLE_ROW)
    with pytest.raises(server.ServerUnavailable, match="no model server answers"):
        server.explain_one(row, row, "rest", "127.0.0.1", sm.free_port(), "taxi")
    with pytest.raises(server.ServerUnavailable, match="refused the request"):
        server.explain_one(row, row, "rest", "127.0.0.1", served.rest_port, "taxi", version=99)


def test_the_baseline_row_is_what_the_form_opens_with():
    from apps.ui.data import FieldSpec, baseline_row

    fields = [
        FieldSpec("fare", "float", "float", 0.0, 100.0, 7),
        FieldSpec("trip_start_hour", "int", "int64", 0, 23, 14),
        FieldSpec("payment_type", "choice", "bytes", default="Cash", choices=("Cash", "Card")),
        FieldSpec("pickup_census_tract", "choice", "bytes", default=None, choices=()),
        FieldSpec("tips_seen", "float", "float"),
    ]
    row = baseline_row(fields)
    assert row == {
        "fare": 7.0,
        "trip_start_hour": 14,
        "payment_type": "Cash",
        "pickup_census_tract": "",  # the form's one empty option
        "tips_seen": 0.0,
    }
    assert isinstance(row["fare"], float)


def test_a_multiclass_prediction_explains_the_chosen_classs_probability(tmp_path):
    """Penguins' stand-in model (tests/spec_models.py): logits s * (1, 2, 3) with s = 0.001 x
    the sum of the numeric inputs, so the last class's probability rises with every numeric
    input and the text inputs are ignored."""
    from modules import dataset_spec
    from tests.spec_models import build_spec_model

    spec = dataset_spec.load("penguins")
    build_spec_model(tmp_path / "penguins" / "1", spec)
    process = sm.ServerProcess(
        "--model_name=penguins", f"--model_base_path={tmp_path / 'penguins'}"
    ).wait_ready()
    try:
        baseline = {
            "bill_length_mm": 44.0,
            "bill_depth_mm": 17.0,
            "flipper_length_mm": 197,
            "body_mass_g": 4050,
            "island": "Biscoe",
            "sex": "male",
        }
        row = {**baseline, "body_mass_g": 5500, "bill_depth_mm": 14.0, "island": "Dream"}
        why = server.explain_one(
            row, baseline, "grpc", "127.0.0.1", process.grpc_port, "penguins", 1, None, spec, 2
        )
        a = why.as_dict()
        assert a["body_mass_g"] > 0 > a["bill_depth_mm"]
        # Ignored inputs: zero up to float32 rounding (the server may score the permutations'
        # rows in batches of different sizes, whose float sums differ in the last bits).
        for ignored in ("island", "sex", "bill_length_mm", "flipper_length_mm"):
            assert a[ignored] == pytest.approx(0.0, abs=1e-6), ignored
        direct = predict_rows(
            RestClient("127.0.0.1", process.rest_port), "penguins", [row, baseline], spec=spec
        )
        p_row, p_baseline = (d["probabilities"][2] for d in direct)
        assert why.prediction == pytest.approx(p_row, abs=1e-6)
        assert why.total == pytest.approx(p_row - p_baseline, abs=1e-6)
        # 6 features, 16 permutations asked: all 720 orderings would be more, so sampled.
        assert not why.exact and why.permutations == shapley.DEFAULT_PERMUTATIONS
    finally:
        process.stop()
