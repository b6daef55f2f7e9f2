"""TFX 1.16's cache lookup zips a cached execution's OUTPUT events with `get_artifacts_by_id`'s
answer as if MLMD kept the order asked for; PostgreSQL does not (tests/lineage/test_postgres.py
re-runs the whole pipeline there). Here a real in-memory MLMD store holds an execution whose
events come in another order than its artifact ids, which is what PostgreSQL's answer looks like
to the zip."""

import pytest
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata
from tfx.orchestration.portable import cache_utils

from pipeline.local import tfx_cache_fix

ORIGINAL = cache_utils._get_outputs_of_execution


@pytest.fixture()
def handle():
    config = metadata_store_pb2.ConnectionConfig()
    config.fake_database.SetInParent()
    with metadata.Metadata(config) as m:
        yield m


def _execution_with_outputs(store, outputs: list[tuple[str, str]], states=None, root=None) -> int:
    """One execution; `outputs` (key, type name) become artifacts with ascending ids (URIs
    root/0, root/1, ...), and their OUTPUT events are written in the reverse order."""
    type_ids = {}
    artifact_ids = []
    for i, (_, type_name) in enumerate(outputs):
        if type_name not in type_ids:
            type_ids[type_name] = store.put_artifact_type(
                metadata_store_pb2.ArtifactType(name=type_name)
            )
        state = (states or {}).get(i, metadata_store_pb2.Artifact.LIVE)
        artifact = metadata_store_pb2.Artifact(
            type_id=type_ids[type_name], uri=f"{root or '/out'}/{i}", state=state
        )
        if root:
            (root / str(i)).mkdir()
        artifact_ids.append(store.put_artifacts([artifact])[0])
    execution_type = store.put_execution_type(metadata_store_pb2.ExecutionType(name="Node"))
    [execution_id] = store.put_executions([metadata_store_pb2.Execution(type_id=execution_type)])
    events = []
    for (key, _), artifact_id in reversed(list(zip(outputs, artifact_ids, strict=True))):
        event = metadata_store_pb2.Event(
            artifact_id=artifact_id, execution_id=execution_id, type=metadata_store_pb2.Event.OUTPUT
        )
        event.path.steps.add().key = key
        event.path.steps.add().index = 0
        events.append(event)
    store.put_events(events)
    return execution_id


OUTPUTS = [("cleaned_examples", "Examples"), ("quarantine", "QuarantinedExamples")]


def test_tfx_1_16_files_a_cached_artifact_under_the_other_outputs_key(handle):
    """The bug this module fixes, shown on TFX's own function (so the test notices an upgrade
    that fixes it, and the fix can go)."""
    execution = _execution_with_outputs(handle.store, OUTPUTS)
    outputs = ORIGINAL(handle, execution)
    assert outputs["cleaned_examples"][0].type_name == "QuarantinedExamples"


def test_the_fix_files_each_artifact_under_its_own_key(handle):
    execution = _execution_with_outputs(handle.store, OUTPUTS)
    outputs = tfx_cache_fix.outputs_of_execution(handle, execution)
    assert {k: [a.type_name for a in v] for k, v in outputs.items()} == {
        "cleaned_examples": ["Examples"],
        "quarantine": ["QuarantinedExamples"],
    }
    assert outputs["cleaned_examples"][0].uri == "/out/0"


def test_outputs_of_one_type_under_several_keys_keep_their_uris(handle):
    """get_artifact_types_by_id answers each type once: the zip ran out of types."""
    keys = [
        ("pre_transform_stats", "ExampleStatistics"),
        ("post_transform_stats", "ExampleStatistics"),
    ]
    execution = _execution_with_outputs(handle.store, keys)
    outputs = tfx_cache_fix.outputs_of_execution(handle, execution)
    assert outputs["pre_transform_stats"][0].uri == "/out/0"
    assert outputs["post_transform_stats"][0].uri == "/out/1"


def test_a_partial_result_is_no_cache_hit(handle):
    execution = _execution_with_outputs(
        handle.store, OUTPUTS, states={1: metadata_store_pb2.Artifact.PENDING}
    )
    assert tfx_cache_fix.outputs_of_execution(handle, execution) is None


def test_install_routes_tfxs_cache_lookup_through_the_fix(handle, monkeypatch, tmp_path):
    """TFX's get_cached_outputs (which also checks that the outputs still exist) now answers
    with each artifact under its own key."""
    monkeypatch.setattr(cache_utils, "_get_outputs_of_execution", ORIGINAL)
    tfx_cache_fix.install()
    assert cache_utils._get_outputs_of_execution is tfx_cache_fix.outputs_of_execution
    execution = _execution_with_outputs(handle.store, OUTPUTS, root=tmp_path)
    context = handle.store.put_context_type(metadata_store_pb2.ContextType(name="cache"))
    [context_id] = handle.store.put_contexts(
        [metadata_store_pb2.Context(type_id=context, name="k")]
    )
    handle.store.put_attributions_and_associations(
        [], [metadata_store_pb2.Association(context_id=context_id, execution_id=execution)]
    )
    [execution_proto] = handle.store.get_executions_by_id([execution])
    execution_proto.last_known_state = metadata_store_pb2.Execution.COMPLETE
    handle.store.put_executions([execution_proto])
    [cache_context] = handle.store.get_contexts_by_id([context_id])
    outputs = cache_utils.get_cached_outputs(handle, cache_context)
    assert outputs["quarantine"][0].type_name == "QuarantinedExamples"
