"""Run compiled steps the way a KFP v2 launcher would, without a cluster: take each task's command,
args and lifecycle hook from the compiled spec, fill in the ExecutorInput that KFP substitutes for
'{{$}}' (parameters resolved from constants and pipeline parameters, output URIs under a root),
and start TFX's own container entrypoint as a process. CsvExampleGen (with its span-resolving
driver) and then StatisticsGen on ExampleGen's recorded output artifact: the spec executes, and
one step's ExecutorOutput feeds the next, not only parses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from pipeline import kubeflow as kr
from pipeline.testing.samples import write_sample

# Runs compiled pipeline steps through the TFX container entrypoint.
pytestmark = pytest.mark.slow

ROWS = 200


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    root = tmp_path_factory.mktemp("kfp_container")
    data_root = write_sample(root / "data", rows=ROWS)
    kcfg = kr.KubeflowConfig().replace(
        data_root=str(data_root),
        beam_args=("--direct_running_mode=in_memory", "--direct_num_workers=1"),
    )
    path = kr.compile_pipeline(kcfg, root / "spec.yaml")
    spec = json_format.ParseDict(yaml.safe_load(path.read_text()), pipeline_spec_pb2.PipelineSpec())
    return spec, root


def _executor_input(
    spec, task_name: str, task_root: Path, upstream: dict
) -> pipeline_spec_pb2.ExecutorInput:
    """What the KFP launcher hands the container for this task."""
    task = spec.root.dag.tasks[task_name]
    component = spec.components[task.component_ref.name]
    ei = pipeline_spec_pb2.ExecutorInput()
    for key, param in task.inputs.parameters.items():
        if param.HasField("component_input_parameter"):
            value = spec.root.input_definitions.parameters[
                param.component_input_parameter
            ].default_value
        else:
            value = param.runtime_value.constant
        ei.inputs.parameter_values[key].CopyFrom(value)
    for key, arg in task.inputs.artifacts.items():
        producer = arg.task_output_artifact
        artifact = ei.inputs.artifacts[key].artifacts.add()
        artifact.CopyFrom(upstream[producer.producer_task][producer.output_artifact_key])
        # ExecutorOutput carries no type; the launcher takes it from the input definition.
        artifact.type.CopyFrom(component.input_definitions.artifacts[key].artifact_type)
    for key, definition in component.output_definitions.artifacts.items():
        artifact = ei.outputs.artifacts[key].artifacts.add()
        artifact.type.CopyFrom(definition.artifact_type)
        artifact.uri = str(task_root / key)
        artifact.name = f"{task_name}-{key}"
    ei.outputs.output_file = str(task_root / "executor_output.json")
    return ei


def _run(command, args, executor_input, log: Path) -> None:
    argv = [sys.executable if c == "python" else c for c in command]
    argv += [json_format.MessageToJson(executor_input) if a == "{{$}}" else a for a in args]
    # As in the image: the repository and its sitecustomize (which sets the Keras-2 switch) on
    # PYTHONPATH; the switch itself is not in the environment.
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(kr.PROJECT_ROOT), str(kr.PROJECT_ROOT / "deploy" / "pipeline")]
    )
    with open(log, "w") as out:
        proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=240)
    assert proc.returncode == 0, log.read_text()[-4000:]


def _run_task(spec, task_name: str, root: Path, upstream: dict) -> pipeline_spec_pb2.ExecutorOutput:
    task_root = root / task_name
    executor_input = _executor_input(spec, task_name, task_root, upstream)
    executor = json_format.MessageToDict(spec.deployment_spec)["executors"][
        spec.components[spec.root.dag.tasks[task_name].component_ref.name].executor_label
    ]
    container = json_format.ParseDict(
        executor["container"], pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec()
    )
    task_root.mkdir(parents=True)
    if container.lifecycle.HasField("pre_cache_check"):
        hook = container.lifecycle.pre_cache_check
        _run(hook.command, hook.args, executor_input, task_root / "driver.log")
        # The driver's ExecutorOutput (span, fingerprint, resolved pattern) is what the service
        # records on the output artifact before starting the executor; do the same.
        driver_output = pipeline_spec_pb2.ExecutorOutput()
        json_format.Parse(Path(executor_input.outputs.output_file).read_text(), driver_output)
        assert driver_output.parameter_values, "the driver resolved nothing"
        (task_root / "driver_output.json").write_text(json_format.MessageToJson(driver_output))
        for key, lst in driver_output.artifacts.items():
            executor_input.outputs.artifacts[key].artifacts[0].metadata.update(
                lst.artifacts[0].metadata
            )
    _run(container.command, container.args, executor_input, task_root / "executor.log")
    output = pipeline_spec_pb2.ExecutorOutput()
    json_format.Parse((task_root / "executor_output.json").read_text(), output)
    upstream[task_name] = {key: lst.artifacts[0] for key, lst in output.artifacts.items()}
    return output


def test_compiled_steps_run_through_the_tfx_container_entrypoint(compiled):
    spec, root = compiled
    upstream: dict = {}
    run_root = root / "run"

    example_gen = _run_task(spec, "CsvExampleGen", run_root, upstream)
    examples = example_gen.artifacts["examples"].artifacts[0]
    # The driver resolved span-{SPAN} to the sample's span 1 and the executor split it 4:1.
    driver = pipeline_spec_pb2.ExecutorOutput()
    json_format.Parse((run_root / "CsvExampleGen" / "driver_output.json").read_text(), driver)
    assert driver.parameter_values["span"].number_value == 1
    assert "span-1/*.csv" in driver.parameter_values["input_config"].string_value
    assert examples.metadata["custom:span"] == 1
    assert json.loads(examples.metadata["split_names"]) == ["train", "eval"]
    assert examples.uri == str(run_root / "CsvExampleGen" / "examples")

    import tensorflow as tf

    counts = {
        split: sum(
            1
            for _ in tf.data.TFRecordDataset(
                tf.io.gfile.glob(f"{examples.uri}/Split-{split}/*.gz"), compression_type="GZIP"
            )
        )
        for split in ("train", "eval")
    }
    assert sum(counts.values()) == ROWS and counts["train"] > counts["eval"] > 0

    # The RowCleaner, on the curated schema, between ExampleGen and StatisticsGen. The compiled
    # ImportSchemaGen reads the image's /pipeline/schema; here its output is the repository's.
    schema_dir = run_root / "ImportSchemaGen" / "schema"
    schema_dir.mkdir(parents=True)
    shutil.copy(kr.PROJECT_ROOT / "schema" / "schema.pbtxt", schema_dir)
    upstream["ImportSchemaGen"] = {
        "schema": pipeline_spec_pb2.RuntimeArtifact(name="schema", uri=str(schema_dir))
    }
    cleaner = _run_task(spec, "RowCleaner", run_root, upstream)
    quarantine = cleaner.artifacts["quarantine"].artifacts[0]
    # A custom artifact type has no typed properties: its custom ones carry no "custom:" prefix.
    assert quarantine.metadata["rows_in"] == ROWS and quarantine.metadata["quarantined"] == 0
    assert upstream["RowCleaner"]["cleaned_examples"].metadata["custom:span"] == 1
    _run_task(spec, "StatisticsGen", run_root, upstream)
    from tensorflow_metadata.proto.v0 import statistics_pb2

    stats_uri = upstream["StatisticsGen"]["statistics"].uri
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    stats.ParseFromString(Path(stats_uri, "Split-train", "FeatureStats.pb").read_bytes())
    assert stats.datasets[0].num_examples == counts["train"]
    assert any(f.path.step == ["trip_start_hour"] for f in stats.datasets[0].features)
