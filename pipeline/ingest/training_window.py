"""The training window: with `PipelineConfig.train_spans = N` (`--train-spans N`), Transform, the
Tuner and the Trainer read the newest span plus the N-1 highest earlier spans that passed the data
gate, instead of the newest span alone. N = 1 (the default) adds nothing to the pipeline.

Why a Resolver over ML Metadata, fed from the DataGate's accepted statistics: every earlier run
left its span there, and tracing by lineage lets only a span the gate accepted enter (the full
reasoning: docs/design.md, "The training window").
"""

from __future__ import annotations

import dataclasses

from tfx.dsl.components.common.resolver import Resolver, ResolverStrategy
from tfx.types import Channel, artifact_utils, standard_artifacts

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


class AcceptedSpansStrategy(ResolverStrategy):
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


def training_window(examples: Channel, num_spans: int) -> Resolver:
    """The Resolver node: this run's `examples` and every accepted statistics of the pipeline in,
    the window's Examples out (`.outputs["examples"]`). The caller makes it run after the gate."""
    accepted = Channel(
        type=standard_artifacts.ExampleStatistics,
        producer_component_id=DataGate.__name__,
        output_key=ACCEPTED_STATISTICS,
    )
    return Resolver(
        strategy_class=AcceptedSpansStrategy,
        config={"num_spans": num_spans},
        **{EXAMPLES: examples, ACCEPTED: accepted},
    ).with_id(TRAINING_WINDOW_RESOLVER)
