"""Which process runs a pipeline, so a run whose process was killed stops reading as "running".

TFX leaves a killed run's executions RUNNING in ML Metadata for ever. The local runner records
its process (host, pid, when it started and ended) as a `pipeline_run_process` context in the
same store before TFX starts; readers match a run to the newest record of its pipeline started
before it, and call a "running" run failed when that process is gone: it ended, or it ran on
this host and its pid is no longer alive (or now belongs to a younger process). A record from
another host whose process has not ended cannot be checked from here: the run stays "running".
Runs with no record (older ones, other orchestrators) keep the status their executions give.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd_pb2

PROCESS_CONTEXT = "pipeline_run_process"
_PROPERTIES = {
    "pipeline": mlmd_pb2.STRING,
    "host": mlmd_pb2.STRING,
    "pid": mlmd_pb2.INT,
    "process_started_s": mlmd_pb2.DOUBLE,  # the OS's start time of the pid (reuse check)
    # A double: ML Metadata's PostgreSQL schema keeps INT properties in 32 bits.
    "ended_ms": mlmd_pb2.DOUBLE,
}


@dataclasses.dataclass(frozen=True)
class RunProcess:
    """One local runner process as recorded at its start."""

    pipeline: str
    host: str
    pid: int
    started_ms: int  # MLMD's clock, as the runs' own timestamps
    process_started_s: float
    ended_ms: int = 0

    def gone(self, host: str | None = None) -> bool | None:
        """True: the process ended or died; False: it still runs; None: it ran on another host
        and did not record an end, so nobody here can tell."""
        if self.ended_ms:
            return True
        if self.host != (host or socket.gethostname()):
            return None
        return not _alive(self.pid, self.process_started_s)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def _alive(pid: int, started_s: float) -> bool:
    import psutil

    try:
        process = psutil.Process(pid)
        # A pid the OS handed to a younger process is not the runner's.
        return process.status() != psutil.STATUS_ZOMBIE and (
            not started_s or process.create_time() <= started_s + 1.0
        )
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _type_id(store: metadata_store.MetadataStore) -> int:
    context_type = mlmd_pb2.ContextType(name=PROCESS_CONTEXT)
    for key, kind in _PROPERTIES.items():
        context_type.properties[key] = kind
    return store.put_context_type(context_type, can_add_fields=True)


def record_start(
    connection_config: mlmd_pb2.ConnectionConfig, pipeline: str, pid: int | None = None
) -> int:
    """Record this process (or `pid`) as the runner of `pipeline`'s next run; returns the
    record's id for `record_end`. Call it before TFX creates the run's context."""
    import psutil

    store = metadata_store.MetadataStore(connection_config)
    pid = os.getpid() if pid is None else pid
    host = socket.gethostname()
    context = mlmd_pb2.Context(
        type_id=_type_id(store), name=f"{pipeline}@{host}:{pid}:{time.time_ns()}"
    )
    context.properties["pipeline"].string_value = pipeline
    context.properties["host"].string_value = host
    context.properties["pid"].int_value = pid
    context.properties["process_started_s"].double_value = psutil.Process(pid).create_time()
    [context_id] = store.put_contexts([context])
    return context_id


def record_end(connection_config: mlmd_pb2.ConnectionConfig, record_id: int) -> None:
    """Mark the record's process as ended (the run finished, failed or was interrupted)."""
    store = metadata_store.MetadataStore(connection_config)
    [context] = store.get_contexts_by_id([record_id])
    context.properties["ended_ms"].double_value = float(int(time.time() * 1000))
    store.put_contexts([context])


def processes(store: metadata_store.MetadataStore) -> list[RunProcess]:
    """Every recorded runner process, oldest first ([] when none was ever recorded)."""
    try:
        contexts = store.get_contexts_by_type(PROCESS_CONTEXT)
    except Exception:  # a store no runner recorded a process in
        return []
    out = []
    for c in contexts:
        p = c.properties
        out.append(
            RunProcess(
                pipeline=p["pipeline"].string_value,
                host=p["host"].string_value,
                pid=int(p["pid"].int_value),
                started_ms=c.create_time_since_epoch,
                process_started_s=p["process_started_s"].double_value,
                ended_ms=int(p["ended_ms"].double_value) if "ended_ms" in p else 0,
            )
        )
    return sorted(out, key=lambda r: r.started_ms)


def process_of(records: list[RunProcess], pipeline: str, run_started_ms: int) -> RunProcess | None:
    """The process that ran a run: the newest record of its pipeline that was alive when the run
    started (None: no recorded process covers it)."""
    covering = [
        r
        for r in records
        if r.pipeline == pipeline
        and r.started_ms <= run_started_ms
        and (not r.ended_ms or run_started_ms <= r.ended_ms)
    ]
    return covering[-1] if covering else None


def checked_status(
    status: str, records: list[RunProcess], pipeline: str, run_started_ms: int
) -> tuple[str, str]:
    """(status, why): a "running" run whose recorded process is gone is "failed"."""
    if status != "running":
        return status, ""
    process = process_of(records, pipeline, run_started_ms)
    if process is None or not process.gone():
        return status, ""
    return "failed", f"its process ({process.describe()}) ended before the run finished"
