"""Kubernetes CPU and memory quantities, as the KFP ResourceSpec takes them."""

from __future__ import annotations

import dataclasses
import re

_CPU = re.compile(r"([0-9]*[.])?[0-9]+m?")
_MEMORY = re.compile(r"([0-9]*[.])?[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?")
_MEMORY_UNITS = {
    "": 1e-9,
    "K": 1e-6,
    "M": 1e-3,
    "G": 1.0,
    "T": 1e3,
    "P": 1e6,
    "E": 1e9,
    "Ki": 2**10 / 1e9,
    "Mi": 2**20 / 1e9,
    "Gi": 2**30 / 1e9,
    "Ti": 2**40 / 1e9,
    "Pi": 2**50 / 1e9,
    "Ei": 2**60 / 1e9,
}


@dataclasses.dataclass(frozen=True)
class Resources:
    """Kubernetes requests = limits for one component's pod (KFP ResourceSpec)."""

    cpu: str = "1"
    memory: str = "4Gi"

    @classmethod
    def parse(cls, text: str) -> Resources:
        """'CPU,MEMORY', e.g. '2,8Gi' or '500m,2G'."""
        cpu, _, memory = text.partition(",")
        return cls(cpu=cpu.strip(), memory=memory.strip() or cls.memory)


def cpu_cores(value: str) -> float:
    """'2', '0.5' or '500m' as cores; ValueError otherwise."""
    if not _CPU.fullmatch(value):
        raise ValueError(f"cpu {value!r}: expected e.g. '2', '0.5' or '500m'")
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def memory_gb(value: str) -> float:
    """'8Gi', '512Mi' or '4G' as (decimal) gigabytes; ValueError otherwise."""
    match = _MEMORY.fullmatch(value)
    if not match:
        raise ValueError(f"memory {value!r}: expected e.g. '8Gi', '512Mi' or '4G'")
    unit = match.group(2) or ""
    return float(value[: len(value) - len(unit)]) * _MEMORY_UNITS[unit]
