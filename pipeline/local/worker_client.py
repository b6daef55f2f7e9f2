"""What Beam's DirectRunner starts for each multi-processing worker during a local run with a
warm worker pool (pipeline/local/warm_workers.py), in place of
`python -m apache_beam.runners.worker.sdk_worker_main`.

It imports nothing but the standard library (it runs with `python -S`): it hands its
environment (the runner's control, logging and pipeline-options descriptors) to the pool, which
forks a worker that already has Beam, TensorFlow and TFX imported, then waits for that worker
and exits with its status, so Beam waits on and stops this process as it would its own worker.
When the pool is not there, or fails before forking, it becomes Beam's worker itself (exec):
the run goes on exactly as without the pool, only slower.

    python -S worker_client.py SOCKET_PATH
"""

from __future__ import annotations

import json
import os
import socket
import sys

BEAM_WORKER_MODULE = "apache_beam.runners.worker.sdk_worker_main"
STARTED, EXITED = b"started", b"exit"


def become_beams_worker() -> None:
    """Replace this process with Beam's own worker command (what the runner would have run)."""
    os.execv(sys.executable, [sys.executable, "-m", BEAM_WORKER_MODULE])


def main(socket_path: str) -> int:
    try:
        pool = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        pool.connect(socket_path)
        request = {"env": dict(os.environ), "cwd": os.getcwd()}
        pool.sendall(json.dumps(request).encode() + b"\n")
        replies = pool.makefile("rb")
        started = replies.readline()
    except OSError:
        started = b""
    if not started.startswith(STARTED + b" "):
        become_beams_worker()
    try:
        ended = replies.readline()
    except OSError:
        ended = b""
    if ended.startswith(EXITED + b" "):
        try:
            return int(ended.split()[1])
        except ValueError:
            return 1
    return 1  # the worker died without saying how (a signal): a failure, as Beam would see it


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
