"""Count the items of a JSON body's top-level arrays from its bytes, before the body is parsed.

Parsing a 5 MiB body of 300k tiny examples builds ~100 MiB of Python objects before the
request limits can count them (issue 23). This scan counts, for chosen top-level keys
("examples", "instances"), how many items their array holds, with numpy over fixed-size
chunks of the raw bytes: memory is a few MiB whatever the body, and the scan stops at the first
chunk where a count passes the limit, so an over-limit body costs milliseconds.

It is a tokenizer, not a validator: quotes preceded by an odd run of backslashes are escaped,
structural characters inside strings are ignored, nesting depth is tracked across chunks. An
invalid body may be counted wrongly; it is then refused by the parser that runs next, so the
count only ever refuses a body the full check would refuse too (a valid array of n items has
n - 1 commas at its own depth).
"""

from __future__ import annotations

import numpy as np

CHUNK = 1 << 20
_WS = b" \t\r\n"
_Q, _BS, _COLON, _COMMA = ord('"'), ord("\\"), ord(":"), ord(",")
_CLOSE, _CLOSE_OBJECT = ord("]"), ord("}")
_DELTA = np.zeros(256, dtype=np.int8)
_DELTA[[ord("["), ord("{")]] = 1
_DELTA[[ord("]"), ord("}")]] = -1
# A number or literal starts with one of these, after a byte that cannot be inside one.
_SCALAR_START = np.zeros(256, dtype=bool)
_SCALAR_START[list(b"-0123456789tfn")] = True
_SCALAR_BODY = np.zeros(256, dtype=bool)
_SCALAR_BODY[list(b"+-.0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")] = True
_STRUCTURAL = np.zeros(256, dtype=bool)
_STRUCTURAL[list(b"[]{},:")] = True


def _key_before(raw: bytes, colon: int) -> bytes | None:
    """The key string that ends just before a top-level colon (None when it is not a plain key)."""
    end = colon
    while end > 0 and raw[end - 1] in _WS:
        end -= 1
    if end == 0 or raw[end - 1] != _Q:
        return None
    start = raw.rfind(b'"', 0, end - 1)
    # Our keys never hold a quote: an escaped one (backslash before it) is some other string.
    if start < 0 or (start > 0 and raw[start - 1] == _BS):
        return None
    return raw[start + 1 : end - 1]


def _array_open(raw: bytes, colon: int, opens: bytes = b"[") -> int:
    """Where the value after a top-level colon opens its array (-1: the value is no array)."""
    i = colon + 1
    while i < len(raw) and raw[i] in _WS:
        i += 1
    return i if i < len(raw) and raw[i] in opens else -1


class _Value:
    """One top-level key's array value: where it opens and closes, its depth-2 commas."""

    __slots__ = ("key", "open", "close", "commas", "count", "leaves")

    def __init__(self, key: bytes, open_at: int, leaves: bool = False) -> None:
        self.key, self.open, self.close = key, open_at, -1
        self.commas: list[np.ndarray] = []
        # leaves: count the scalar values inside (columnar 'inputs'), not the array's items
        self.leaves = leaves
        self.count = 0 if leaves else 1


def _scan(
    raw: bytes,
    keys: tuple[bytes, ...],
    stop_above: int,
    keep: bool,
    leaf_keys: tuple[bytes, ...] = (),
) -> list[_Value]:
    values: list[_Value] = []
    last_byte = ord(" ")  # the byte before the chunk
    in_string = False  # state carried from one chunk to the next
    backslashes = 0  # backslashes that end the previous chunk
    depth = 0
    current: _Value | None = None  # the tracked value the scan is in
    for start in range(0, len(raw), CHUNK):
        c = np.frombuffer(raw, dtype=np.uint8, count=min(CHUNK, len(raw) - start), offset=start)
        n = len(c)
        quotes = np.flatnonzero(c == _Q)
        is_bs = c == _BS
        has_bs = bool(backslashes) or bool(is_bs.any())
        if len(quotes) and has_bs:
            idx = np.arange(n, dtype=np.int32)
            last_plain = np.maximum.accumulate(np.where(is_bs, -1, idx))
            prev = quotes - 1
            before = np.where(prev >= 0, last_plain[np.maximum(prev, 0)], -1)
            run = np.where(prev >= 0, prev - before, 0)
            run = np.where(before < 0, quotes + backslashes, run)  # run reaches the chunk start
            quotes = quotes[run % 2 == 0]
        # Only structural bytes are looked at: outside strings when an even number of real
        # quotes precede them in the chunk (odd, when the chunk starts inside a string).
        marks = np.flatnonzero(_STRUCTURAL[c])
        marks = marks[(np.searchsorted(quotes, marks) & 1) == int(in_string)]
        kinds = c[marks]
        depth_after = depth + np.cumsum(_DELTA[kinds], dtype=np.int32)
        colons = marks[(kinds == _COLON) & (depth_after == 1)] + start
        commas = marks[(kinds == _COMMA) & (depth_after == 2)] + start
        closes = marks[((kinds == _CLOSE) | (kinds == _CLOSE_OBJECT)) & (depth_after == 1)] + start
        # Each depth-2 comma (and depth-1 close) belongs to the last depth-1 colon before it.
        owners = [current]
        for colon in colons.tolist():
            key = _key_before(raw, colon)
            if key in keys:
                at = _array_open(raw, colon)
                owners.append(_Value(key, at) if at >= 0 else None)
            elif key in leaf_keys:
                at = _array_open(raw, colon, b"[{")
                owners.append(_Value(key, at, leaves=True) if at >= 0 else None)
            else:
                owners.append(None)
        owner = np.searchsorted(colons, commas)
        per_owner = np.bincount(owner, minlength=len(owners)).tolist()
        if any(v is not None and v.leaves for v in owners):
            # Scalar values: numbers and literals, plus strings that are not keys (every key
            # has its colon, so value strings = opening quotes - colons). A {"b64": ...} leaf
            # counts one, its string; the value's own keys cancel against their colons.
            prev = np.empty(n, dtype=np.uint8)
            prev[0], prev[1:] = last_byte, c[:-1]
            starts = np.flatnonzero(_SCALAR_START[c] & ~_SCALAR_BODY[prev])
            starts = starts[(np.searchsorted(quotes, starts) & 1) == int(in_string)]
            opening = quotes[(np.arange(len(quotes)) + int(in_string)) % 2 == 0]
            all_colons = marks[kinds == _COLON]
            leaves = np.bincount(
                np.searchsorted(colons, np.concatenate([starts, opening]) + start),
                minlength=len(owners),
            ) - np.bincount(np.searchsorted(colons, all_colons + start), minlength=len(owners))
            for i, value in enumerate(owners):
                if value is not None and value.leaves:
                    per_owner[i] = int(leaves[i])
        close_owner = np.searchsorted(colons, closes).tolist()
        for i, value in enumerate(owners):
            if value is None:
                continue
            if i:
                values.append(value)
            value.count += per_owner[i]
            if keep and per_owner[i]:
                value.commas.append(commas[owner == i])
            if value.close < 0 and i in close_owner:
                value.close = int(closes[close_owner.index(i)])
        current = owners[-1]
        in_string = bool((len(quotes) + in_string) & 1)
        last_byte = int(c[-1]) if n else last_byte
        if has_bs:
            plain = np.flatnonzero(~is_bs)
            tail = n - 1 - (int(plain[-1]) if len(plain) else -1)
            backslashes = tail + (backslashes if tail == n else 0)
        depth = int(depth_after[-1]) if len(depth_after) else depth
        if stop_above and any(v.count > stop_above for v in values):
            break
    return values


def top_level_counts(
    raw: bytes, keys: tuple[bytes, ...], stop_above: int = 0, leaf_keys: tuple[bytes, ...] = ()
) -> dict[bytes, int]:
    """Items of each top-level key's array value (an upper bound for an empty one: 1), and for
    `leaf_keys` the scalar values anywhere inside the key's array or object (a lower bound of
    the leaves the request limits count: a {"b64": ...} object is one).

    With `stop_above` > 0 the scan ends at the first chunk where a count exceeds it (counts are
    then partial, but already above the limit)."""
    counts: dict[bytes, int] = {}
    for value in _scan(raw, keys, stop_above, keep=False, leaf_keys=leaf_keys):
        counts[value.key] = counts.get(value.key, 0) + value.count
    return counts


def loads_in_slices(raw: bytes, key: bytes, slice_bytes: int = CHUNK, pause=None) -> object:
    """orjson.loads(raw), with the top-level `key` array parsed a slice of items at a time.

    orjson holds the GIL for a whole call: one 64 MiB body would stall every other request for
    the whole parse. Parsed in ~1 MiB slices, with `pause()` between them (time.sleep(0) in a
    worker thread hands the GIL to the event loop), the loop waits one slice at most. A body
    whose key is missing, not an array, or given twice is parsed in one call."""
    import orjson

    found = _scan(raw, (key,), 0, keep=True)
    if len(found) != 1 or found[0].close < 0:
        return orjson.loads(raw)
    value = found[0]
    body = orjson.loads(raw[: value.open] + b"[]" + raw[value.close + 1 :])
    if not isinstance(body, dict):
        return body
    bounds = np.concatenate([[value.open], *value.commas, [value.close]])
    # Cut at the item boundary at or after every slice_bytes; each slice is whole items.
    cuts = np.unique(
        bounds[np.searchsorted(bounds, np.arange(value.open, value.close, slice_bytes))]
    )
    cuts = np.append(cuts[cuts < value.close], value.close)
    items: list = []
    for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
        items += orjson.loads(b"[" + raw[a + 1 : b] + b"]")
        if pause is not None:
            pause()
    body[key.decode()] = items
    return body
