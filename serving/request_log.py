"""Request logging for training/serving skew checks (`mlops serve --request_log_dir DIR`).

Every inference request's inputs are appended, one tf.Example per row, to TFRecord files in DIR:
serialized tf.Examples as received (serving_default, classify, regress), and raw-feature requests
(one 1-D tensor per feature, e.g. serving_raw) turned into tf.Examples. Files are written as
`requests-<start>-<pid>-<n>.tfrecord.open` and renamed to `.tfrecord` when complete (rotated every
`max_records` examples or `rotate_seconds`, and at shutdown), so a reader
(`mlops data check-skew`) only ever sees whole files. Logging is off unless the flag is given.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import numpy as np

from serving_api.examples import row_to_example

log = logging.getLogger(__name__)

OPEN_SUFFIX = ".tfrecord.open"
DONE_SUFFIX = ".tfrecord"


class RequestLog:
    def __init__(
        self, directory: str, max_records: int = 10_000, rotate_seconds: float = 300.0
    ) -> None:
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.max_records = max_records
        self.rotate_seconds = rotate_seconds
        self._lock = threading.Lock()
        self._writer = None
        self._path: str | None = None
        self._opened = 0.0
        self._records = 0
        self._files = 0
        self.logged = 0

    # ---- what gets logged ------------------------------------------------------------------------
    def log_examples(self, serialized) -> None:
        """Serialized tf.Examples as the client sent them."""
        self._write([bytes(s) for s in serialized])

    def log_inputs(self, inputs: dict[str, np.ndarray]) -> None:
        """A predict request: a single 1-D string tensor is taken as serialized tf.Examples;
        several 1-D tensors of one batch size as one feature each (raw features)."""
        arrays = list(inputs.values())
        if not arrays or any(a.ndim not in (1, 2) for a in arrays):
            return
        if len(arrays) == 1 and arrays[0].ndim == 1 and arrays[0].dtype.kind in "OSU":
            self._write([v if isinstance(v, bytes) else str(v).encode() for v in arrays[0]])
            return
        sizes = {a.shape[0] for a in arrays}
        if len(sizes) != 1 or any(a.ndim == 2 and a.shape[1] != 1 for a in arrays):
            return
        self._write(_examples_from_columns(inputs, sizes.pop()))

    # ---- files -----------------------------------------------------------------------------------
    def _write(self, records: list[bytes]) -> None:
        if not records:
            return
        with self._lock:
            if self._writer is not None and (
                self._records >= self.max_records
                or time.monotonic() - self._opened >= self.rotate_seconds
            ):
                self._close_file()
            if self._writer is None:
                self._open_file()
            for record in records:
                self._writer.write(record)
            self._writer.flush()
            self._records += len(records)
            self.logged += len(records)

    def _open_file(self) -> None:
        import tensorflow as tf

        self._files += 1
        stem = f"requests-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{self._files}"
        self._path = os.path.join(self.directory, stem + OPEN_SUFFIX)
        self._writer = tf.io.TFRecordWriter(self._path)
        self._opened = time.monotonic()
        self._records = 0

    def _close_file(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        os.rename(self._path, self._path[: -len(OPEN_SUFFIX)] + DONE_SUFFIX)
        self._writer = None
        self._path = None

    def flush(self) -> None:
        """Complete the current file so readers see it."""
        with self._lock:
            self._close_file()

    close = flush


def _examples_from_columns(inputs: dict[str, np.ndarray], n: int) -> list[bytes]:
    columns = {k: v.reshape(n) for k, v in inputs.items()}
    return [row_to_example({k: c[i] for k, c in columns.items()}, columns) for i in range(n)]
