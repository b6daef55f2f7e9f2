"""What the live requests are compared with: the versions that serve, and for each the training
statistics of the data it was trained on.

The versions come from the model server itself (TF Serving's model status API: the AVAILABLE
versions), or are given. Each version's statistics are found by lineage in ML Metadata
(`MetadataStore.training_statistics_uri`: pushed model -> Trainer -> Transform -> Examples ->
StatisticsGen), so a version keeps its own baseline after later runs on newer spans; or one
FeatureStats.pb is given for every version (`--statistics`, no ML Metadata at hand).
"""

from __future__ import annotations

import os
import urllib.parse

from tensorflow_metadata.proto.v0 import statistics_pb2

TRAIN_SPLIT = "train"
AVAILABLE = "AVAILABLE"


class BaselineError(RuntimeError):
    """No baseline for this check (server unreachable, no lineage for a version, ...)."""


def served_versions(server_url: str, model_name: str) -> list[str]:
    """The versions of `model_name` the server reports AVAILABLE, ascending."""
    from serving_api.client import RestClient, ServerUnreachable, ServingClientError

    parsed = urllib.parse.urlsplit(server_url if "://" in server_url else f"http://{server_url}")
    if not parsed.hostname or not parsed.port:
        raise BaselineError(f"--server {server_url!r} is not host:port or http://host:port")
    client = RestClient(parsed.hostname, parsed.port, timeout=10)
    try:
        status = client.status(model_name)
    except ServerUnreachable:
        raise BaselineError(f"model server {server_url} is unreachable") from None
    except ServingClientError as e:
        raise BaselineError(f"model server {server_url}: {e}") from None
    versions = [
        str(v.get("version"))
        for v in status.get("model_version_status", [])
        if v.get("state") == AVAILABLE
    ]
    if not versions:
        raise BaselineError(f"model server {server_url} serves no version of {model_name}")
    return sorted(versions, key=lambda v: (len(v), v))


class TrainingStatistics:
    """The training statistics per served version: one file for all (`path`), or each version's
    own from ML Metadata (`metadata` URL). Loaded once per version."""

    def __init__(
        self, path: str | None = None, metadata: str | None = None, pipeline_name: str | None = None
    ) -> None:
        self.path, self.metadata, self.pipeline_name = path, metadata, pipeline_name
        self._loaded: dict[str, tuple[str, statistics_pb2.DatasetFeatureStatisticsList]] = {}

    def for_version(self, version: str) -> tuple[str, statistics_pb2.DatasetFeatureStatisticsList]:
        """(where the statistics are, the statistics) of the data `version` was trained on."""
        key = "" if self.path else version
        if key not in self._loaded:
            path = self.path or self._from_metadata(version)
            self._loaded[key] = (path, _load(path))
        return self._loaded[key]

    def _from_metadata(self, version: str) -> str:
        from metadata.store import MetadataError, open_store

        try:
            uri = open_store(self.metadata).training_statistics_uri(version, self.pipeline_name)
        except MetadataError as e:
            raise BaselineError(str(e)) from None
        if uri is None:
            raise BaselineError(
                f"no lineage from a pushed version {version} to its training statistics in "
                f"{self.metadata} (pass --statistics)"
            )
        return os.path.join(uri, f"Split-{TRAIN_SPLIT}", "FeatureStats.pb")


def _load(path: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    import tensorflow as tf

    stats = statistics_pb2.DatasetFeatureStatisticsList()
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            stats.ParseFromString(f.read())
    except (tf.errors.OpError, OSError) as e:
        raise BaselineError(f"cannot read training statistics {path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise BaselineError(f"{path} is not a TFDV statistics file ({type(e).__name__})") from None
    if not stats.datasets:
        raise BaselineError(f"{path} holds no statistics")
    return stats
