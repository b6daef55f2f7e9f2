"""What counts as a valid numeric value, in one place.

A value is valid when its column's dtype can hold it exactly as a finite number: float columns
are float32 in tf.Examples, the Transform graph and the model, so 1e50 (which becomes +inf in
float32), NaN and +-inf are invalid there; int64 columns take whole numbers within int64. A
domain (the schema's min/max) narrows that further. `mlops data add-span`, the RowCleaner, the
model server's data plane and the web app's batch scoring all ask this module, so a value one
gate refuses is refused by every other.
"""

from __future__ import annotations

import math
import re

import numpy as np

FLOAT = "float"
INT64 = "int64"
FLOAT32_MAX = float(np.finfo(np.float32).max)
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_INTEGER = re.compile(r"^[+-]?[0-9]+$")


def float_problem(
    value: float, minimum: float | None = None, maximum: float | None = None
) -> str | None:
    """Why `value` is not a valid float32 feature value (within [minimum, maximum] when given),
    or None."""
    if math.isnan(value):
        return "NaN is not a number"
    if math.isinf(value) or abs(value) > FLOAT32_MAX:
        return f"{value!r} is not finite in float32"
    return _domain_problem(value, minimum, maximum)


def int_problem(
    value: int, minimum: float | None = None, maximum: float | None = None
) -> str | None:
    """Why `value` is not a valid int64 feature value (within [minimum, maximum]), or None."""
    if not INT64_MIN <= value <= INT64_MAX:
        return f"{value} does not fit int64"
    return _domain_problem(value, minimum, maximum)


def text_problem(
    text: str, dtype: str, minimum: float | None = None, maximum: float | None = None
) -> str | None:
    """Why the CSV cell `text` is not a valid value of a `dtype` (FLOAT or INT64) column, or None.
    An empty cell is a missing value, not an invalid one: presence is the schema's business."""
    cell = text.strip()
    if not cell:
        return None
    if dtype == INT64:
        if not _INTEGER.match(cell):
            return f"{cell[:40]!r} is not an integer"
        return int_problem(int(cell), minimum, maximum)
    try:
        value = float(cell)
    except ValueError:
        return f"{cell[:40]!r} is not a number"
    return float_problem(value, minimum, maximum)


def invalid_floats(values: np.ndarray) -> np.ndarray:
    """A boolean mask of the entries of a numeric array that are not finite in float32."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "f":
        return np.zeros(arr.shape, dtype=bool)
    with np.errstate(invalid="ignore", over="ignore"):
        return ~np.isfinite(arr) | (np.abs(arr) > FLOAT32_MAX)


def array_problem(values: np.ndarray, dtype: str) -> str | None:
    """Why a request's numeric array holds a value a `dtype` feature cannot take, or None."""
    arr = np.asarray(values)
    if arr.size == 0 or arr.dtype.kind not in "iuf":
        return None
    if dtype == FLOAT or arr.dtype.kind == "f":
        bad = invalid_floats(arr)
        if bad.any():
            return float_problem(float(arr[bad].flat[0])) or "not finite in float32"
    return None


def _domain_problem(value: float, minimum: float | None, maximum: float | None) -> str | None:
    if minimum is not None and value < minimum:
        return f"{value!r} is below the minimum {minimum!r}"
    if maximum is not None and value > maximum:
        return f"{value!r} is above the maximum {maximum!r}"
    return None
