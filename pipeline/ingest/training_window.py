"""The training window: with `PipelineConfig.train_spans = N` (`--train-spans N`), Transform, the
Tuner and the Trainer read the newest span plus the N-1 highest earlier spans that passed the data
gate, instead of the newest span alone. N = 1 (the default) adds nothing to the pipeline.

Why input resolution over ML Metadata: TFX 1.16's CsvExampleGen ingests one span per run, but every
earlier run left its span in ML Metadata as an Examples artifact. Selecting artifacts across runs is
what TFX's Resolver nodes are for, so the window is a `tfx.dsl.Resolver` (public tfx.v1 API) whose
ResolverStrategy hands Transform the chosen Examples artifacts; Transform analyses and transforms
every input artifact (one transformed_examples artifact each), and the Tuner and Trainer read all of
their splits. Nothing is copied or re-ingested, and caching keys on the chosen artifacts: an
unchanged window re-uses Transform and Trainer.

Why it resolves from the DataGate's accepted statistics, not from ExampleGen's Examples: a rolling
span range over all Examples (SpanRangeStrategy, or LatestSpan in a resolver function) would take a
span the gate rejected. The gate publishes `accepted_statistics` only when it passes (a failed
execution publishes nothing), and each such artifact traces back through MLMD events to exactly the
Examples artifact whose statistics it accepted (`MetadataStore.accepted_examples`). Tracing by
lineage rather than by span number matters when a span was ingested twice (rejected, then fixed in
place and accepted): only the accepted version can enter. The built-in strategies and ops cannot do
this: they select by span within one channel (LatestSpan also needs a `version` property that
ExampleStatistics lacks), and GraphTraversal walks from a single root over every hop, where the
gate's `drift` input leads back to earlier spans' examples.

The newest span: the Resolver also takes this run's ExampleGen output and runs after the DataGate
(an explicit edge), so the span enters only because this run's gate accepted it; the strategy checks
that it too traces back from an accepted statistics artifact and fails the run otherwise.

The Evaluator keeps evaluating on the newest span's eval split (this run's ExampleGen output): the
candidate and the served baseline are compared on the data the next model will serve, on the same
examples as with N = 1, so the blessing means the same thing whatever the window.

The Kubeflow runner refuses N > 1: KubeflowV2DagRunner compiles only LatestArtifactStrategy and
LatestBlessedModelStrategy resolvers (pipeline/kubeflow/validation.py).
"""

from __future__ import annotations

import dataclasses

from tfx import v1 as tfx
from tfx.types import artifact_utils

from metadata.store import MetadataStore, span_of
from pipeline.validation.data_gate import ACCEPTED_STATISTICS, DataGate

# Node id of the window's Resolver (only in the pipeline when train_spans > 1).
TRAINING_WINDOW_RESOLVER = "TrainingWindowResolver"
# The Resolver's input/output keys: this run's examples, then the accepted statistics.
EXAMPLES = "examples"
ACCEPTED = "accepted"


class SpanNotAcceptedError(RuntimeError):
    """The newest span reached the training window without an accepted-statistics record."""


@dataclasses.dataclass(frozen=True)
class AcceptedSpan:
    """One DataGate acceptance: the span, when, its accepted-statistics artifact and the Examples
    artifact those statistics trace back to."""

    span: int
    accepted_ms: int
    statistics_id: int
    examples_id: int


def choose_window(
    current_examples_id: int, current_span: int, accepted: list[AcceptedSpan], num_spans: int
) -> list[AcceptedSpan]:
    """The newest span's acceptance first, then, newest span first, the latest acceptance of each
    of the `num_spans - 1` highest accepted spans below `current_span`. Raise SpanNotAcceptedError
    when the current examples were never accepted."""
    if num_spans < 1:
        raise ValueError(f"num_spans must be >= 1, got {num_spans}")
    order = sorted(accepted, key=lambda a: (a.accepted_ms, a.statistics_id))
    current = [a for a in order if a.examples_id == current_examples_id]
    if not current:
        raise SpanNotAcceptedError(
            f"span {current_span} (examples {current_examples_id}) has no accepted statistics: "
            "the data gate did not pass it, so it is not trained on"
        )
    latest = {a.span: a for a in order if a.span < current_span}  # later acceptances win
    earlier = [latest[span] for span in sorted(latest, reverse=True)[: num_spans - 1]]
    return [current[-1], *earlier]


class AcceptedSpansStrategy(tfx.dsl.experimental.ResolverStrategy):
    """The training window: this run's Examples and those of the `num_spans - 1` highest earlier
    spans the DataGate accepted (the newest acceptance of each), with their accepted statistics."""

    def __init__(self, num_spans: int):
        self._num_spans = int(num_spans)

    def resolve_artifacts(self, store, input_dict):
        [current] = input_dict[EXAMPLES]
        statistics = {a.id: a for a in input_dict[ACCEPTED]}
        sources = MetadataStore(store).accepted_examples(list(statistics))
        accepted = [
            AcceptedSpan(
                span_of(examples),
                statistics[statistics_id].mlmd_artifact.create_time_since_epoch,
                statistics_id,
                examples.id,
            )
            for statistics_id, examples in sources.items()
            if span_of(examples) is not None
        ]
        window = choose_window(
            current.id, span_of(current.mlmd_artifact), accepted, self._num_spans
        )
        examples = [current] + [
            artifact_utils.deserialize_artifact(current.artifact_type, sources[a.statistics_id])
            for a in window[1:]
        ]
        return {EXAMPLES: examples, ACCEPTED: [statistics[a.statistics_id] for a in window]}


def training_window(examples: tfx.dsl.Channel, num_spans: int) -> tfx.dsl.Resolver:
    """The Resolver node: this run's `examples` and every accepted statistics of the pipeline in,
    the window's Examples out (`.outputs["examples"]`). The caller makes it run after the gate."""
    accepted = tfx.dsl.Channel(
        type=tfx.types.standard_artifacts.ExampleStatistics,
        producer_component_id=DataGate.__name__,
        output_key=ACCEPTED_STATISTICS,
    )
    return tfx.dsl.Resolver(
        strategy_class=AcceptedSpansStrategy,
        config={"num_spans": num_spans},
        **{EXAMPLES: examples, ACCEPTED: accepted},
    ).with_id(TRAINING_WINDOW_RESOLVER)
