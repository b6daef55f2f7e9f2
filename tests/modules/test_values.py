"""The one definition of a valid numeric value (modules/values.py), with hostile values."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from modules import values

FLOAT32_MAX = float(np.finfo(np.float32).max)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_a_float_is_valid_exactly_when_float32_holds_it_finite(x):
    valid = values.float_problem(x) is None
    assert valid == (math.isfinite(x) and abs(x) <= FLOAT32_MAX)
    if valid:
        assert np.isfinite(np.float32(x))


@given(st.integers(min_value=-(2**70), max_value=2**70))
def test_an_integer_is_valid_exactly_when_int64_holds_it(n):
    assert (values.int_problem(n) is None) == (-(2**63) <= n < 2**63)
    assert (values.text_problem(str(n), values.INT64) is None) == (-(2**63) <= n < 2**63)


def test_csv_cells_hostile_values():
    for cell in ("nan", "NaN", "inf", "-inf", "+inf", "1e50", "-1e400", "Infinity", "1e39"):
        assert values.text_problem(cell, values.FLOAT) is not None, cell
    for cell in ("", "  ", "0", "-3.5", "3.4e38", "1e-50"):
        assert values.text_problem(cell, values.FLOAT) is None, cell
    for cell in ("1.5", "1e3", "9223372036854775808", "0x10", "nan"):
        assert values.text_problem(cell, values.INT64) is not None, cell
    assert values.text_problem("9223372036854775807", values.INT64) is None
    assert values.text_problem("5", values.FLOAT, minimum=0, maximum=4) is not None
    assert values.text_problem("-1", values.INT64, minimum=0) is not None


def test_arrays_masks_and_problems():
    arr = np.array([1.0, np.nan, np.inf, -np.inf, 1e50, -1e39, 3.4e38])
    assert values.invalid_floats(arr).tolist() == [False, True, True, True, True, True, False]
    assert values.array_problem(arr, values.FLOAT) is not None
    assert values.array_problem(np.array([1.0, 2.0]), values.FLOAT) is None
    assert values.array_problem(np.array([1, 2], dtype=np.int64), values.INT64) is None
    assert values.array_problem(np.array(["a"]), values.FLOAT) is None
