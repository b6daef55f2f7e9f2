"""A synthetic TFX run history in a real ML Metadata store (SQLite or PostgreSQL), no pipeline run.

Each run records what create_pipeline's components record, in TFX's vocabulary: contexts
(pipeline, pipeline_run, node '<pipeline>.<node id>'), executions with INPUT/OUTPUT events keyed
like the real components, and artifacts whose payload files exist under the pipeline root at
<root>/<node>/<key>/<execution id>. The Evaluator reads the latest blessed model as
`baseline_model`, the DriftValidator every earlier accepted statistics as `history`, the Trainer
an imported hyperparameters artifact that lives outside the root.
"""

from __future__ import annotations

import dataclasses
import os

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

PIPELINE = "synthetic_pipeline"
PAYLOAD_BYTES = 1000


@dataclasses.dataclass
class Run:
    span: int
    blessed: bool = False
    pushed_version: str | None = None
    artifacts: dict[str, int] = dataclasses.field(default_factory=dict)  # key -> artifact id


class History:
    def __init__(self, config: pb.ConnectionConfig, root: str, hyperparameters_dir: str):
        self.store = metadata_store.MetadataStore(config)
        self.root = root
        self.hyperparameters_dir = hyperparameters_dir
        self.types: dict[str, int] = {}
        self.runs: list[Run] = []
        self.pipeline = self._context("pipeline", PIPELINE)
        self.blessed_models: list[int] = []
        self.accepted: list[int] = []
        self.hyperparameters: int | None = None

    # ---- MLMD plumbing -----------------------------------------------------------------------
    def _type(self, kind: str, name: str) -> int:
        if (kind, name) not in self.types:
            if kind == "artifact":
                t = pb.ArtifactType(name=name)
                if name in ("Examples", "ExampleStatistics"):
                    t.properties["span"] = pb.INT
                self.types[(kind, name)] = self.store.put_artifact_type(t)
            elif kind == "execution":
                self.types[(kind, name)] = self.store.put_execution_type(
                    pb.ExecutionType(name=name)
                )
            else:
                self.types[(kind, name)] = self.store.put_context_type(pb.ContextType(name=name))
        return self.types[(kind, name)]

    def _context(self, type_name: str, name: str) -> pb.Context:
        found = self.store.get_context_by_type_and_name(type_name, name)
        if found is not None:
            return found
        context = pb.Context(type_id=self._type("context", type_name), name=name)
        [context.id] = self.store.put_contexts([context])
        return context

    def _execute(self, run_context, node, inputs: dict[str, list[int]], outputs: dict[str, str]):
        """One execution of `node` reading `inputs` (key -> artifact ids) and writing one artifact
        per output (key -> type), with payload files. Returns key -> new artifact id."""
        execution = pb.Execution(type_id=self._type("execution", f"tfx.{node}Executor"))
        execution.last_known_state = pb.Execution.COMPLETE
        [execution_id] = self.store.put_executions([execution])
        execution.id = execution_id
        pairs = []
        existing = self.store.get_artifacts_by_id(
            sorted({i for ids in inputs.values() for i in ids})
        )
        by_id = {a.id: a for a in existing}
        for key, ids in inputs.items():
            for index, artifact_id in enumerate(ids):
                event = pb.Event(type=pb.Event.INPUT, artifact_id=artifact_id)
                event.path.steps.add().key = key
                event.path.steps.add().index = index
                pairs.append((by_id[artifact_id], event))
        made = {}
        for key, (type_name, props) in outputs.items():
            uri = os.path.join(self.root, node, key, str(execution_id))
            os.makedirs(uri)
            with open(os.path.join(uri, "payload"), "wb") as f:
                f.write(b"x" * PAYLOAD_BYTES)
            artifact = pb.Artifact(type_id=self._type("artifact", type_name), uri=uri)
            artifact.state = pb.Artifact.LIVE
            for name, value in props.items():
                if name == "span":
                    artifact.properties["span"].int_value = value
                elif isinstance(value, int):
                    artifact.custom_properties[name].int_value = value
                else:
                    artifact.custom_properties[name].string_value = value
            event = pb.Event(type=pb.Event.OUTPUT)
            event.path.steps.add().key = key
            event.path.steps.add().index = 0
            pairs.append((artifact, event))
            made[key] = len(pairs) - 1
        node_context = self._context("node", f"{PIPELINE}.{node}")
        _, artifact_ids, _ = self.store.put_execution(
            execution, pairs, [self.pipeline, run_context, node_context]
        )
        return {key: artifact_ids[index] for key, index in made.items()}

    # ---- runs --------------------------------------------------------------------------------
    def add_run(self, span: int, blessed: bool = False, pushed_version: str | None = None) -> Run:
        run = Run(span, blessed, pushed_version)
        context = self._context("pipeline_run", f"run-{len(self.runs) + 1}")
        a = run.artifacts
        a.update(
            self._execute(context, "CsvExampleGen", {}, {"examples": ("Examples", {"span": span})})
        )
        a.update(
            self._execute(
                context,
                "StatisticsGen",
                {"examples": [a["examples"]]},
                {"statistics": ("ExampleStatistics", {"span": span})},
            )
        )
        a.update(
            self._execute(
                context,
                "DriftValidator",
                {"statistics": [a["statistics"]], "history": list(self.accepted)},
                {"drift": ("DriftReport", {})},
            )
        )
        a.update(
            self._execute(
                context,
                "DataGate",
                {"statistics": [a["statistics"]], "drift": [a["drift"]]},
                {"accepted_statistics": ("ExampleStatistics", {"span": span})},
            )
        )
        self.accepted.append(a["accepted_statistics"])
        if self.hyperparameters is None:
            os.makedirs(self.hyperparameters_dir, exist_ok=True)
            hp = pb.Artifact(
                type_id=self._type("artifact", "HyperParameters"), uri=self.hyperparameters_dir
            )
            hp.state = pb.Artifact.LIVE
            event = pb.Event(type=pb.Event.OUTPUT)
            event.path.steps.add().key = "result"
            importer = pb.Execution(type_id=self._type("execution", "tfx.Importer"))
            importer.last_known_state = pb.Execution.COMPLETE
            _, [self.hyperparameters], _ = self.store.put_execution(
                importer, [(hp, event)], [self.pipeline, context]
            )
        a.update(
            self._execute(
                context,
                "Trainer",
                {"examples": [a["examples"]], "hyperparameters": [self.hyperparameters]},
                {"model": ("Model", {})},
            )
        )
        baseline = self.blessed_models[-1:]
        a.update(
            self._execute(
                context,
                "Evaluator",
                {"model": [a["model"]], "baseline_model": baseline, "examples": [a["examples"]]},
                {
                    "evaluation": ("ModelEvaluation", {}),
                    "blessing": ("ModelBlessing", {"blessed": int(blessed)}),
                },
            )
        )
        if blessed:
            self.blessed_models.append(a["model"])
        pushed = {"pushed": int(pushed_version is not None)}
        if pushed_version is not None:
            pushed["pushed_version"] = pushed_version
        a.update(
            self._execute(
                context,
                "Pusher",
                {"model": [a["model"]], "model_blessing": [a["blessing"]]},
                {"pushed_model": ("PushedModel", pushed)},
            )
        )
        self.runs.append(run)
        return run


def sqlite_config(path: str) -> pb.ConnectionConfig:
    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return config
