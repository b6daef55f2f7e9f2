"""Request limits: what one request may ask of the server before any memory is spent on it.

TF Serving has none of these; without them a 450-byte gRPC request declaring a 200,000-row shape
with one broadcast string expands to 200k examples (gigabytes of server memory). Checks run on the
declared shape and the JSON structure, before arrays are built, and fail with INVALID_ARGUMENT.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from serving.errors import invalid_argument
from serving.json_count import top_level_counts


@dataclass(frozen=True)
class RequestLimits:
    """`mlops serve --max_request_elements/--max_tensor_rank/--max_string_bytes` (0 = no limit)."""

    max_elements: int = 100_000  # tensor elements (or examples) per request, all inputs together
    max_rank: int = 32  # dims per tensor; also the deepest JSON list nesting accepted
    max_string_bytes: int = 64 * 1024 * 1024  # string bytes per request, after broadcasting

    def check_shape(self, shape: list[int], where: str) -> int:
        """Validate a declared shape; returns its element count."""
        if self.max_rank and len(shape) > self.max_rank:
            raise invalid_argument(
                f"{where}: tensor rank {len(shape)} exceeds the limit of {self.max_rank} dims"
            )
        for d in shape:
            if d < 0:
                raise invalid_argument(f"{where}: negative dimension {d} in shape {shape}")
            # Beside a zero dimension any size multiplies to no elements, but no dimension can
            # be larger than a whole request (numpy cannot even shape such an empty array).
            if self.max_elements and d > self.max_elements:
                raise invalid_argument(
                    f"{where}: dimension {d} in shape {shape} exceeds the limit of "
                    f"{self.max_elements} elements per request (--max_request_elements)"
                )
        n = math.prod(shape)
        self.check_elements(n, where)
        return n

    def check_elements(self, n: int, where: str) -> None:
        if self.max_elements and n > self.max_elements:
            raise invalid_argument(
                f"{where}: {n} elements exceed the limit of {self.max_elements} per request "
                "(--max_request_elements)"
            )

    def check_string_bytes(self, n: int, where: str) -> None:
        if self.max_string_bytes and n > self.max_string_bytes:
            raise invalid_argument(
                f"{where}: {n} string bytes exceed the limit of {self.max_string_bytes} per "
                "request (--max_string_bytes)"
            )

    def check_json_body(
        self, raw: bytes, keys: tuple[str, ...], leaf_keys: tuple[str, ...] = ()
    ) -> None:
        """Count the items of the body's top-level `keys` arrays (and the scalar values inside
        `leaf_keys`) from the bytes, before the body is parsed: an over-limit body is refused
        without building its objects."""
        if not self.max_elements:
            return
        counts = top_level_counts(
            raw,
            tuple(k.encode() for k in keys),
            self.max_elements,
            tuple(k.encode() for k in leaf_keys),
        )
        for key, n in counts.items():
            if n > self.max_elements:
                raise invalid_argument(
                    f"'{key.decode()}': at least {n} elements exceed the limit of "
                    f"{self.max_elements} per request (--max_request_elements)"
                )

    def check_json_value(self, value: object, where: str) -> None:
        """Nesting depth and leaf count of a JSON tensor value, iteratively (no recursion)."""
        self.check_json_values([value], where)

    def check_json_values(self, values: Iterable[object], where: str) -> None:
        """Nesting depth of each JSON value and their leaves together: a request's inputs are
        counted as a whole before any of them becomes an array."""
        stack = [(value, 0) for value in values]
        leaves = 0
        budget = self.max_elements or math.inf
        while stack:
            v, depth = stack.pop()
            if isinstance(v, list):
                if self.max_rank and depth >= self.max_rank:
                    raise invalid_argument(
                        f"{where}: JSON lists nested deeper than {self.max_rank} levels"
                    )
                stack.extend((x, depth + 1) for x in v)
            else:
                leaves += 1
                if leaves > budget:
                    self.check_elements(leaves, where)


UNLIMITED = RequestLimits(0, 0, 0)
