"""The Trainer's in-memory cache: by a byte budget of decoded rows, so memory stays bounded."""

from __future__ import annotations

from modules import features, trainer


def _split(tmp_path, size: int) -> list[str]:
    folder = tmp_path / f"split-{size}"
    folder.mkdir()
    half = size // 2
    (folder / "data_tfrecord-00000-of-00002.gz").write_bytes(b"x" * half)
    (folder / "data_tfrecord-00001-of-00002.gz").write_bytes(b"x" * (size - half))
    return [str(folder / "*")]


def test_decoded_row_size_counts_every_model_input_and_the_label():
    assert trainer.decoded_bytes_per_row() == 8 * (len(features.RAW_FEATURE_KEYS) + 1)


def test_split_is_cached_only_within_the_byte_budget(tmp_path):
    budget = 1_000_000
    rows_in_budget = budget // trainer.decoded_bytes_per_row()
    at_budget = _split(tmp_path, rows_in_budget * 40)  # 40 compressed bytes per row
    over_budget = _split(tmp_path, (rows_in_budget + 10) * 40)
    assert trainer.fits_in_cache(at_budget, max_bytes=budget)
    assert not trainer.fits_in_cache(over_budget, max_bytes=budget)
    # The same file holds twice the rows if rows compress to half the bytes.
    assert not trainer.fits_in_cache(at_budget, bytes_per_row=20.0, max_bytes=budget)


def test_default_budget_caches_the_taxi_sample_and_streams_millions_of_rows(tmp_path):
    # Span 1's train split is about 12k rows (~0.5 MB compressed); 5M rows is about 200 MB.
    assert trainer.fits_in_cache(_split(tmp_path, 500_000))
    assert not trainer.fits_in_cache(_split(tmp_path, 4_000_000 * 44))
    assert trainer.fits_in_cache([str(tmp_path / "nothing-here" / "*")])  # empty split
