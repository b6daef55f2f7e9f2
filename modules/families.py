"""The model families' names, in a module without TensorFlow: flags, the pipeline config and the
Trainer's custom_config name them; modules/model.py builds them.

Linear and wide-and-deep are the default search. Gradient-boosted trees (TensorFlow Decision
Forests) are opt-in (PipelineConfig.model_families, `--model-family`): docs/models.md gives
the measured figures behind that choice.
"""

from __future__ import annotations

from collections.abc import Iterable

WIDE_AND_DEEP, LINEAR = "wide_and_deep", "linear"
GRADIENT_BOOSTED_TREES = "gradient_boosted_trees"
# The families the Tuner searches by default, and every family there is.
FAMILIES: tuple[str, ...] = (WIDE_AND_DEEP, LINEAR)
ALL_FAMILIES: tuple[str, ...] = (*FAMILIES, GRADIENT_BOOSTED_TREES)
# Tuner and Trainer custom_config key: the families to search / train (absent: FAMILIES).
MODEL_FAMILIES_KEY = "model_families"


def check_families(families: Iterable[str]) -> tuple[str, ...]:
    """`families` as a tuple without repeats, each one known (ValueError naming the first
    unknown one and the known ones otherwise)."""
    families = tuple(dict.fromkeys(families))
    unknown = [f for f in families if f not in ALL_FAMILIES]
    if unknown:
        raise ValueError(
            f"unknown model family {unknown[0]!r}: expected one of {', '.join(ALL_FAMILIES)}"
        )
    return families


def configured_families(custom_config: dict | None) -> tuple[str, ...]:
    """The families a component's custom_config asks for (FAMILIES when it names none)."""
    return check_families((custom_config or {}).get(MODEL_FAMILIES_KEY) or FAMILIES)
