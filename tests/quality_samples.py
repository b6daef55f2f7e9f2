"""Small datasets with a known answer, for the baseline and model-family tests: a regression
label that is a linear function of the inputs plus noise (a linear regression is the right model:
its MSE is the noise variance), and a binary label from a noisy linear score."""

from __future__ import annotations

import csv
import random
from pathlib import Path

ZONES = {"north": 10.0, "south": -5.0, "east": 0.0}
REGRESSION_NOISE_SD = 20.0


def linear_regression_csv(path: Path, rows: int = 400, seed: int = 0) -> Path:
    """target = 150 + 2 x1 - 30 x2 + 0.5 x3 + zone effect + N(0, 20^2): the label's variance is
    about 2,300, a linear model's MSE about 400."""
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["x1", "x2", "x3", "zone", "target"])
        for i in range(rows):
            x1, x2, x3 = rng.gauss(50, 10), rng.gauss(0, 1), rng.uniform(0, 100)
            zone = list(ZONES)[i % len(ZONES)]
            y = 150 + 2 * x1 - 30 * x2 + 0.5 * x3 + ZONES[zone]
            y += rng.gauss(0, REGRESSION_NOISE_SD)
            w.writerow([f"{x1:.3f}", f"{x2:.3f}", f"{x3:.3f}", zone, f"{y:.3f}"])
    return path


def binary_csv(path: Path, rows: int = 400, seed: int = 0) -> Path:
    """label = 1 when 0.8 a - 0.5 b + color effect + N(0, 0.6^2) > 0."""
    rng = random.Random(seed)
    colors = {"red": 0.7, "green": 0.0, "blue": -0.7}
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "color", "label"])
        for i in range(rows):
            a, b = rng.gauss(0, 1), rng.gauss(0, 1)
            color = list(colors)[i % len(colors)]
            score = 0.8 * a - 0.5 * b + colors[color] + rng.gauss(0, 0.6)
            w.writerow([f"{a:.4f}", f"{b:.4f}", color, int(score > 0)])
    return path
