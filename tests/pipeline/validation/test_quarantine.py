"""The quarantine's figures as the DataGate and the run summary read them (no pipeline run)."""

from __future__ import annotations

import json

import pytest

from pipeline.validation.quarantine import CleaningSummary


def _summary(**overrides) -> CleaningSummary:
    props = {
        "rows_in": 400,
        "duplicates": 3,
        "quarantined": 4,
        "clean": 393,
        "reason_counts": json.dumps({"out_of_range": 3, "wrong_type": 1}),
        "feature_counts": {"fare": 3, "trip_seconds": 1},
    }
    return CleaningSummary.from_properties(props | overrides, "/q")


def test_share_is_quarantined_over_rows_read_and_the_threshold_is_inclusive():
    summary = _summary()
    assert summary.fraction == pytest.approx(0.01)
    assert not summary.exceeds(0.01)  # at the threshold: the run goes on
    assert summary.exceeds(0.0099)
    assert _summary(quarantined=5).exceeds(0.01)
    assert not _summary(rows_in=0, quarantined=0, clean=0).exceeds(0.0)


def test_describe_has_every_figure_in_one_line():
    text = _summary().describe(0.01)
    assert text == (
        "400 rows in, 3 duplicates dropped, 4 quarantined (1.00% <= max 1.00%): out_of_range 3, "
        "wrong_type 1 [fare 3, trip_seconds 1], 393 clean"
    )
    assert "> max 0.50%" in _summary().describe(0.005)
    assert _summary(schema_checked=0).describe().endswith("(no curated schema: duplicates only)")
