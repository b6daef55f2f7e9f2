"""The sliding window of the last N requests the model server logged, read incrementally.

Why a window of N records rather than of T minutes: the sample-size-aware tests' thresholds depend
on the row count, so a fixed N gives every check the same sensitivity whatever the traffic (a quiet
night and a busy noon are judged alike); time smoothing is the alert's job (`for: 30m`). Each check
reads only what was written since the last one: completed files (`*.tfrecord`, immutable) once, and
the server's file still being written (`*.tfrecord.open`) from the record where the last check
stopped, so the window is at most one check interval old. Unreadable records are skipped and counted
by `monitoring.skew_check.read_request_file`, the reader of `mlops data check-skew`, so both skip
exactly the same records."""

from __future__ import annotations

import collections
import os

from monitoring.skew_check import RequestLogContents, read_request_file

DONE_SUFFIX = ".tfrecord"
OPEN_SUFFIX = ".tfrecord.open"  # serving/request_log.py's names, a file contract like its format
MAX_REASONS = 5


class RequestWindow:
    """The last `size` readable requests (serialized tf.Examples) under `directory`."""

    def __init__(self, directory: str, kinds: dict[str, str], size: int) -> None:
        self.directory = directory
        self.kinds = kinds
        self.size = size
        self.examples: collections.deque[bytes] = collections.deque(maxlen=size)
        self.skipped = 0  # unreadable records met so far
        self.reasons: collections.deque[str] = collections.deque(maxlen=MAX_REASONS)
        self._read: dict[str, int] = {}  # file stem -> records read from it
        self._done: set[str] = set()  # stems of completed files read to the end (or passed over)
        self._started = False

    def _files(self) -> list[tuple[str, str, bool]]:
        """(stem, path, complete) of the log files, oldest first (stems start with the time)."""
        out = []
        for name in os.listdir(self.directory):
            for suffix, complete in ((OPEN_SUFFIX, False), (DONE_SUFFIX, True)):
                if name.endswith(suffix):
                    out.append((name[: -len(suffix)], os.path.join(self.directory, name), complete))
                    break
        return sorted(out)

    def update(self) -> int:
        """Read what was logged since the last call; return the number of new readable
        requests. The first call reads the newest files back until the window is full and
        passes over older ones."""
        files = self._files()
        if not self._started:
            self._started = True
            self._fill(files)
            return len(self.examples)
        new = 0
        for stem, path, complete in files:
            if stem in self._done:
                continue
            contents = self._read_file(stem, path, complete)
            self.examples.extend(contents.examples)
            new += len(contents.examples)
        on_disk = {stem for stem, _, _ in files}
        self._done &= on_disk  # forget files removed by log retention
        self._read = {k: v for k, v in self._read.items() if k in on_disk}
        return new

    def _fill(self, files: list[tuple[str, str, bool]]) -> None:
        batches: list[list[bytes]] = []
        have = 0
        for stem, path, complete in reversed(files):
            if have >= self.size:
                self._done.add(stem)  # older than the window: never read
                continue
            contents = self._read_file(stem, path, complete)
            batches.append(contents.examples)
            have += len(contents.examples)
        for batch in reversed(batches):
            self.examples.extend(batch)

    def _read_file(self, stem: str, path: str, complete: bool) -> RequestLogContents:
        contents = RequestLogContents([], 1)
        self._read[stem] = read_request_file(
            path, self.kinds, contents, start=self._read.get(stem, 0), complete=complete
        )
        if complete:
            self._done.add(stem)
        self.skipped += contents.skipped
        self.reasons.extend(contents.reasons)
        return contents
