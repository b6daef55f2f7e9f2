"""Canary split: unlabelled inference requests shared between the `stable` and `canary` versions.

Opt-in (`mlops serve --canary_percent=...`); without it every request resolves exactly as in TF
Serving. With it, a Predict / Classify / Regress / MultiInference request that names neither a
version nor a label goes to the version labelled `canary` with probability percent/100 and to the
one labelled `stable` otherwise. The labels are read from the live model config at each request,
so `mlops models promote|rollback` moves the split with the next config poll. Requests naming a
version or a label go exactly there. A request carrying a routing key (`X-Canary-Key` header /
`x-canary-key` gRPC metadata) is sticky: the same key always lands on the same side.

When a model lacks either label the split is off for it and unlabelled requests go where TF
Serving sends them (the newest version); the server logs that once per model and configuration.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

STABLE = "stable"
CANARY = "canary"
# REST header / gRPC metadata key (gRPC keys are lower case) of the optional sticky routing key.
ROUTING_KEY_HEADER = "X-Canary-Key"


def _percent(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(value) or not 0 <= value <= 100:
        raise ValueError(f"{where}: {text!r} is not a percentage between 0 and 100")
    return value


@dataclass(frozen=True)
class CanarySplit:
    """Percent of unlabelled requests for `canary`: one figure for every model, or per model."""

    default: float = 0.0
    per_model: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> CanarySplit:
        """`25` (every model) or `taxi=25,other=5` (per model; others get no split)."""
        text = text.strip()
        if "=" not in text:
            return cls(_percent(text, "--canary_percent"))
        per_model: dict[str, float] = {}
        for part in text.split(","):
            name, sep, value = part.strip().partition("=")
            name = name.strip()
            if not sep or not name:
                raise ValueError(f"--canary_percent: {part.strip()!r} is not MODEL=PERCENT")
            if name in per_model:
                raise ValueError(f"--canary_percent: model {name!r} is given twice")
            per_model[name] = _percent(value.strip(), f"--canary_percent for {name}")
        return cls(0.0, per_model)

    @property
    def enabled(self) -> bool:
        return self.default > 0 or any(v > 0 for v in self.per_model.values())

    def percent(self, model: str) -> float:
        return self.per_model.get(model, self.default)

    def check_models(self, served: set[str]) -> None:
        unknown = sorted(set(self.per_model) - served)
        if unknown:
            raise ValueError(
                f"--canary_percent names {', '.join(unknown)}, which the model config does not "
                f"serve (models: {', '.join(sorted(served)) or 'none'})"
            )


class CanaryRouter:
    """Picks `stable` or `canary` for an unlabelled request; None means TF Serving's default."""

    def __init__(self, split: CanarySplit, rng: random.Random | None = None) -> None:
        self.split = split
        self._rng = rng or random.Random()
        self._warned: set[tuple[str, tuple]] = set()

    def pick(self, model: str, labels: Mapping[str, int], key: str | None = None) -> str | None:
        percent = self.split.percent(model)
        if percent <= 0:
            return None
        if STABLE not in labels or CANARY not in labels:
            state = (model, tuple(sorted(labels.items())))
            if state not in self._warned:
                self._warned.add(state)
                log.warning(
                    "Canary split of %s is off: it needs both the %r and %r version labels "
                    "(has %s); unlabelled requests go to the newest version, as in TF Serving",
                    model,
                    STABLE,
                    CANARY,
                    dict(labels) or "none",
                )
            return None
        if key:
            digest = hashlib.blake2b(f"{model}\0{key}".encode(), digest_size=8).digest()
            draw = int.from_bytes(digest, "big") / 2**64 * 100
        else:
            draw = self._rng.random() * 100
        return CANARY if draw < percent else STABLE
