"""How many examples lack a feature's value, counted as TFDV's missingness reads: examples without
the feature (`num_missing`) plus examples whose value list is empty.

CsvExampleGen writes an empty CSV cell as a feature with an empty value list, which TFDV counts
as present (`num_non_missing`) with zero values; a column left blank in 5,999 of 6,000 rows
would otherwise show 0 missing. One definition for every reader of statistics (the web app's
Data page, the model card).
"""

from __future__ import annotations

import dataclasses

from tensorflow_metadata.proto.v0 import statistics_pb2


@dataclasses.dataclass(frozen=True)
class Presence:
    present: int  # examples with at least one value
    missing: int  # examples without the feature or with an empty value list

    @property
    def missing_fraction(self) -> float:
        total = self.present + self.missing
        return self.missing / total if total else 0.0


def empty_lists(common: statistics_pb2.CommonStatistics) -> int:
    """Examples that carry the feature with no value. Exact when every example holds at most one
    value (CSV columns: tot_num_values counts the examples with one); otherwise read off the
    value-count histogram's buckets that end at 0 values."""
    if common.num_non_missing <= 0 or common.min_num_values > 0:
        return 0
    if common.max_num_values <= 1:
        return max(0, int(common.num_non_missing) - int(common.tot_num_values))
    zero = sum(b.sample_count for b in common.num_values_histogram.buckets if b.high_value <= 0)
    return min(int(round(zero)), int(common.num_non_missing))


def presence(common: statistics_pb2.CommonStatistics) -> Presence:
    """Present and missing example counts of one feature's common statistics."""
    empty = empty_lists(common)
    return Presence(int(common.num_non_missing) - empty, int(common.num_missing) + empty)
