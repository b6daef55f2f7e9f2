"""RowCleaner: the component between ExampleGen and StatisticsGen that cleans rows one by one.

Per split, in one Beam pipeline (the pipeline's beam_args, so it runs wherever ExampleGen and
StatisticsGen run):

  - every row is checked against the curated schema (pipeline/validation/row_checks.py): a row that
    violates it goes to the `quarantine` output (QuarantinedExamples: JSON lines with the row, its
    reasons and the tf.Example as read), the others to `cleaned_examples` (Examples, in the
    schema's types);
  - exact duplicate rows are dropped and counted (among the clean rows and among the bad ones);
  - the figures (rows in, duplicates, quarantined, clean, quarantined rows per reason) are written
    to Split-<name>/CleaningSummary.json and, summed over the splits, as custom properties of the
    quarantine artifact, where the DataGate compares the quarantined share with
    PipelineConfig.max_quarantine_fraction and the run report prints them.

StatisticsGen, the validators, the drift check, Transform, the Evaluator and the Pusher's warmup
requests all read `cleaned_examples`. Without a schema input (`--infer-schema`: the schema is
inferred from the statistics, so it cannot come before them) only duplicates are dropped.
The outputs depend only on the inputs, so a re-run with unchanged data is a cache hit.
"""

from __future__ import annotations

import base64
import collections
import json
import os

import apache_beam as beam
from tfx import types
from tfx.dsl.components.base import base_beam_component, base_beam_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec

from pipeline import tfrecord_shards
from pipeline.validation import quarantine as q

_TFRECORD_PREFIX = "data_tfrecord"  # ExampleGen's file names, so nothing downstream can tell
_DEDUPLICATED_PREFIX = "data_tfrecord_deduplicated"  # one copy of each repeated row


class QuarantinedExamples(types.Artifact):
    """Rows the RowCleaner set aside, per split, with the reasons (validation/quarantine.py)."""

    # No typed PROPERTIES (Kubeflow V2 allows none on custom types): split names, span and the
    # figures are custom properties.
    TYPE_NAME = q.QUARANTINE_TYPE


class RowCleanerSpec(ComponentSpec):
    PARAMETERS = {}
    INPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "schema": ChannelParameter(type=standard_artifacts.Schema, optional=True),
    }
    OUTPUTS = {
        q.CLEANED_EXAMPLES: ChannelParameter(type=standard_artifacts.Examples),
        q.QUARANTINE: ChannelParameter(type=QuarantinedExamples),
    }


class _Check(beam.DoFn):
    """Routes each row by whether it is clean and whether its bytes occur more than once:
    clean rows (in the schema's types) whose digest occurs once to the main output, as one list
    per input batch in the order read (so they are written batch by batch, not row by row);
    clean repeated rows to REPEATED, bad ones (as read) to BAD_ONCE or BAD_REPEATED, row by row
    (they are few). Only the REPEATED outputs are grouped to drop copies."""

    ONCE, REPEATED, BAD_ONCE, BAD_REPEATED = "once", "repeated", "bad_once", "bad_repeated"

    def __init__(self, schema_bytes: bytes | None):
        self._schema_bytes = schema_bytes
        self._checker = None
        self._repeated = (None, None)  # (the side input, its digests as a sorted uint64 array)

    def setup(self):
        if self._schema_bytes is not None:
            from tensorflow_metadata.proto.v0 import schema_pb2

            from pipeline.validation.row_checks import RowChecker

            self._checker = RowChecker(schema_pb2.Schema.FromString(self._schema_bytes))

    def _repeated_mask(self, records: list[bytes], repeated_digests: frozenset[int]):
        """Which rows' digests occur more than once in the split (None: no digest does)."""
        import numpy as np

        from pipeline.ingest.digests import batch_digests

        if not repeated_digests:
            return None
        if self._repeated[0] is not repeated_digests:
            digests = np.array(sorted(repeated_digests), dtype=np.uint64)
            self._repeated = (repeated_digests, digests)
        return np.isin(batch_digests(records), self._repeated[1])

    def process(self, records: list[bytes], repeated_digests: frozenset[int]):
        import numpy as np

        repeated = self._repeated_mask(records, repeated_digests)
        cleaned, clean = records, None
        if self._checker is not None:
            # Only the rows the column checks flag are checked one by one (and re-serialized
            # when their values are converted to the schema's types); the others are clean as
            # read.
            suspect = self._checker.suspects(records)
            clean = ~suspect
            if suspect.any():
                cleaned = list(records)
                for i in np.flatnonzero(suspect).tolist():
                    cleaned[i], _ = self._checker.check_serialized(records[i])
                    clean[i] = cleaned[i] is not None
        if repeated is None and (clean is None or clean.all()):
            if cleaned:
                yield cleaned
            return
        if clean is None:
            clean = np.ones(len(records), dtype=bool)
        if repeated is None:
            repeated = np.zeros(len(records), dtype=bool)
        once = clean & ~repeated
        batch = [cleaned[i] for i in np.flatnonzero(once).tolist()]
        if batch:
            yield batch
        for i in np.flatnonzero(~once).tolist():
            if not clean[i]:
                tag = self.BAD_REPEATED if repeated[i] else self.BAD_ONCE
                yield beam.pvalue.TaggedOutput(tag, records[i])
            else:
                yield beam.pvalue.TaggedOutput(self.REPEATED, cleaned[i])


class _RepeatedDigests(beam.CombineFn):
    """Batches of records -> the digests seen more than once (8 bytes a row while counting)."""

    def create_accumulator(self):
        return []

    def add_input(self, acc, records):
        from pipeline.ingest.digests import batch_digests

        acc.append(batch_digests(records))
        return acc

    def merge_accumulators(self, accs):
        return [part for acc in accs for part in acc]

    def compact(self, acc):
        import numpy as np

        return [np.concatenate(acc)] if len(acc) > 1 else acc

    def extract_output(self, acc):
        import numpy as np

        from pipeline.ingest.digests import repeated

        return repeated(np.concatenate(acc)) if acc else frozenset()


def _tfrecord_files(pattern: str) -> list[str]:
    """The files `pattern` matches, as beam.io.ReadFromTFRecord would read them (an error when
    none does; empty files hold no records)."""
    from apache_beam.io.filesystems import FileSystems

    (result,) = FileSystems.match([pattern])
    if not result.metadata_list:
        raise OSError(f"No files found based on the file pattern {pattern}")
    return sorted(m.path for m in result.metadata_list if m.size_in_bytes > 0)


class _ReadBatches(beam.DoFn):
    """A TFRecord file -> its records in lists of up to `size`, in the file's order: one Beam
    element per batch, not per row (the per-element cost was a large part of the cleaner's)."""

    def __init__(self, size: int):
        self._size = size

    def process(self, path: str):
        yield from tfrecord_shards.record_batches(path, self._size)


class ReadRecordBatches(beam.PTransform):
    """The records of the TFRecord files matching a pattern, in batches (lists of bytes).

    The files are matched when the pipeline runs and spread over the workers (a Reshuffle of
    their names: each file is read whole by one worker, as a gzipped file cannot be split)."""

    def __init__(self, pattern: str, batch_size: int = 1000):
        super().__init__()
        self._pattern, self._batch_size = pattern, batch_size

    def expand(self, pipeline):
        return (
            pipeline
            | "Pattern" >> beam.Create([self._pattern])
            | "Match" >> beam.FlatMap(_tfrecord_files)
            | "Spread" >> beam.Reshuffle()
            | "ReadBatches" >> beam.ParDo(_ReadBatches(self._batch_size))
        )


def write_record_batches(directory: str, prefix: str) -> beam.PTransform:
    """Batches of serialized records -> gzipped TFRecord files in `directory`, named
    `prefix`-SSSSS-of-NNNNN.gz as beam.io.WriteToTFRecord(prefix, file_name_suffix=".gz") names
    them, one file per bundle (pipeline/tfrecord_shards.py: TensorFlow's C++ writer takes a
    batch at a time, where WriteToTFRecord frames and compresses each row in Python)."""
    stem = os.path.join(directory, prefix)
    return tfrecord_shards.WriteShards(
        tfrecord_shards.BundleWriter(tfrecord_shards.temp_dir_beside(stem)), stem
    )


class _QuarantineLine(beam.DoFn):
    """(bad row, copies) -> one JSON line with the row's reasons, and its reasons for the counts."""

    def __init__(self, schema_bytes: bytes):
        self._schema_bytes = schema_bytes
        self._checker = None

    def setup(self):
        from tensorflow_metadata.proto.v0 import schema_pb2

        from pipeline.validation.row_checks import RowChecker

        self._checker = RowChecker(schema_pb2.Schema.FromString(self._schema_bytes))

    def process(self, element):
        from tensorflow.core.example import example_pb2

        from pipeline.validation.row_checks import example_to_json

        record, copies = element
        _, violations = self._checker.check_serialized(record)
        try:
            features = example_to_json(example_pb2.Example.FromString(record))
        except Exception:  # noqa: BLE001 - not a tf.Example: the base64 keeps it
            features = {}
        line = {
            "reasons": [str(v) for v in violations],
            "features": features,
            "copies": copies,
            "example": base64.b64encode(record).decode("ascii"),
        }
        yield json.dumps(line, ensure_ascii=False, sort_keys=True)
        counts = {q.QUARANTINED: 1, q.DUPLICATES: copies - 1, q.ROWS_IN: copies}
        for reason in {v.reason for v in violations}:
            counts[f"reason:{reason}"] = 1
        for feature in {v.feature for v in violations}:
            counts[f"feature:{feature}"] = 1
        yield beam.pvalue.TaggedOutput("counts", counts)


class _SumCounts(beam.CombineFn):
    def create_accumulator(self):
        return collections.Counter()

    def add_input(self, acc, counts):
        acc.update(counts)
        return acc

    def merge_accumulators(self, accs):
        out = collections.Counter()
        for acc in accs:
            out.update(acc)
        return out

    def extract_output(self, acc):
        summary = {
            key: acc.get(key, 0) for key in (q.ROWS_IN, q.DUPLICATES, q.QUARANTINED, q.CLEAN)
        }
        for key, prefix in ((q.REASON_COUNTS, "reason:"), (q.FEATURE_COUNTS, "feature:")):
            summary[key] = {k[len(prefix) :]: v for k, v in acc.items() if k.startswith(prefix)}
        return json.dumps(summary, sort_keys=True)


class _PartialCounts(_SumCounts):
    """Summed counts of one branch, still a Counter for the final _SumCounts."""

    def extract_output(self, acc):
        return acc


def _batched(records: beam.PCollection, label: str) -> beam.PCollection:
    # Batches are decoded to Arrow and checked column by column (RowChecker.suspects).
    return records | label >> beam.BatchElements(min_batch_size=100, max_batch_size=1000)


def _record_batches(pipeline: beam.Pipeline, read, label: str) -> beam.PCollection:
    """`read` as batches of records: a file pattern is read by ReadRecordBatches, a PTransform
    of single records (e.g. beam.Create in tests) is batched by BatchElements."""
    if isinstance(read, str):
        return pipeline | label >> ReadRecordBatches(read)
    return _batched(pipeline | label >> read, f"Batch{label}")


def clean_split(
    pipeline: beam.Pipeline,
    read: str | beam.PTransform,
    schema_bytes: bytes | None,
    examples_dir: str,
    quarantine_dir: str,
) -> None:
    """The Beam stages for one split: check, de-duplicate, write both outputs and the summary.

    `read` is the split's file pattern (TFRecord files, read in batches by ReadRecordBatches)
    or a PTransform giving its serialized rows one by one.

    The split is read twice. The first pass keeps only an 8-byte digest per row and finds the
    digests that occur more than once; the second checks every row and writes the rows whose
    digest occurred once straight through, in the order read. Only rows with a repeated digest
    (the duplicates, and the rare digest collision) are grouped by their bytes to keep one
    copy. Grouping every row (beam's Count.PerElement) was what made the cleaner's memory grow
    with the split on the DirectRunner, which holds a GroupByKey's whole input (measured in
    docs/performance.md); reading twice costs less than that. The second pass reads the files
    again rather than reusing the first pass's rows: a PCollection consumed after a side input
    is computed would be held in memory until then. Rows travel in batches from the read to
    the write (one Beam element per ~1,000 rows): per-row elements, Beam's Python TFRecord
    reader and its per-row writes were most of the cleaner's time (docs/performance.md).
    """
    repeated_digests = beam.pvalue.AsSingleton(
        _record_batches(pipeline, read, "ReadForDigests")
        | "RepeatedDigests" >> beam.CombineGlobally(_RepeatedDigests())
    )
    checked = _record_batches(pipeline, read, "Read") | "Check" >> beam.ParDo(
        _Check(schema_bytes), repeated_digests
    ).with_outputs(_Check.REPEATED, _Check.BAD_ONCE, _Check.BAD_REPEATED, main=_Check.ONCE)

    _ = checked[_Check.ONCE] | "WriteClean" >> write_record_batches(examples_dir, _TFRECORD_PREFIX)
    repeated = checked[_Check.REPEATED] | "CountCleanCopies" >> beam.combiners.Count.PerElement()
    _ = (
        repeated
        | "OneOfEach" >> beam.Map(lambda kv: [kv[0]])
        | "WriteDeduplicated" >> write_record_batches(examples_dir, _DEDUPLICATED_PREFIX)
    )
    parts = [
        checked[_Check.ONCE]
        | "BatchSizes" >> beam.Map(len)
        | "CountOnce" >> beam.CombineGlobally(sum)
        | "OnceCounts" >> beam.Map(lambda n: {q.CLEAN: n, q.ROWS_IN: n}),
        repeated
        | "CleanCounts"
        >> beam.Map(lambda kv: {q.CLEAN: 1, q.DUPLICATES: kv[1] - 1, q.ROWS_IN: kv[1]})
        | "SumRepeated" >> beam.CombineGlobally(_PartialCounts()),
    ]
    if schema_bytes is not None:
        bad = (
            (
                checked[_Check.BAD_ONCE] | "OneCopy" >> beam.Map(lambda record: (record, 1)),
                checked[_Check.BAD_REPEATED]
                | "CountBadCopies" >> beam.combiners.Count.PerElement(),
            )
            | "AllBad" >> beam.Flatten()
            | "Explain"
            >> beam.ParDo(_QuarantineLine(schema_bytes)).with_outputs("counts", main="line")
        )
        _ = bad.line | "WriteQuarantine" >> beam.io.WriteToText(
            os.path.join(quarantine_dir, q.QUARANTINE_FILE_PREFIX),
            file_name_suffix=q.QUARANTINE_FILE_SUFFIX,
            num_shards=1,
        )
        parts.append(bad.counts | "SumBad" >> beam.CombineGlobally(_PartialCounts()))
    _ = (
        parts
        | "AllCounts" >> beam.Flatten()
        | "Sum" >> beam.CombineGlobally(_SumCounts())
        | "WriteSummary"
        >> beam.io.WriteToText(
            os.path.join(quarantine_dir, q.SUMMARY_FILE), shard_name_template="", num_shards=1
        )
    )


class Executor(base_beam_executor.BaseBeamExecutor):
    """Cleans every split of the input Examples in one Beam pipeline (see the module docstring)."""

    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 - TFX API
        import tensorflow as tf
        from tfx.utils import io_utils

        examples = artifact_utils.get_single_instance(input_dict["examples"])
        cleaned = artifact_utils.get_single_instance(output_dict[q.CLEANED_EXAMPLES])
        quarantined = artifact_utils.get_single_instance(output_dict[q.QUARANTINE])
        schema_bytes = None
        if input_dict.get("schema"):
            schema_uri = artifact_utils.get_single_uri(input_dict["schema"])
            schema = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(schema_uri))
            schema_bytes = schema.SerializeToString()
        splits = artifact_utils.decode_split_names(examples.split_names)

        # The cleaned Examples are the input's, rows aside: same splits, span, version, format.
        cleaned.split_names = examples.split_names
        quarantined.set_string_custom_property("split_names", examples.split_names)
        for name, value in examples.mlmd_artifact.custom_properties.items():
            cleaned.mlmd_artifact.custom_properties[name].CopyFrom(value)
        cleaned.span, cleaned.version = examples.span, examples.version
        span = examples.span
        if examples.has_custom_property("span"):
            span = examples.get_int_custom_property("span")
        quarantined.set_int_custom_property("span", span)

        with self._make_beam_pipeline() as pipeline:
            for split in splits:
                pattern = io_utils.all_files_pattern(
                    artifact_utils.get_split_uri([examples], split)
                )
                _ = pipeline | f"Clean[{split}]" >> _CleanSplit(
                    pattern,
                    schema_bytes,
                    artifact_utils.get_split_uri([cleaned], split),
                    os.path.join(quarantined.uri, f"Split-{split}"),
                )

        total = collections.Counter()
        by = {q.REASON_COUNTS: collections.Counter(), q.FEATURE_COUNTS: collections.Counter()}
        for split in splits:
            path = os.path.join(quarantined.uri, f"Split-{split}", q.SUMMARY_FILE)
            with tf.io.gfile.GFile(path) as f:
                summary = json.loads(f.read())
            for key, counter in by.items():
                counter.update(summary.pop(key))
            total.update(summary)
        for key in (q.ROWS_IN, q.DUPLICATES, q.QUARANTINED, q.CLEAN):
            quarantined.set_int_custom_property(key, total.get(key, 0))
        for key, counter in by.items():
            quarantined.set_string_custom_property(key, json.dumps(dict(sorted(counter.items()))))
        quarantined.set_int_custom_property(q.SCHEMA_CHECKED, int(schema_bytes is not None))


class _CleanSplit(beam.PTransform):
    def __init__(self, read, schema_bytes, examples_dir, quarantine_dir):
        super().__init__()
        self._args = (read, schema_bytes, examples_dir, quarantine_dir)

    def expand(self, pipeline):
        clean_split(pipeline, *self._args)
        return beam.pvalue.PDone(pipeline)


class RowCleaner(base_beam_component.BaseBeamComponent):
    """Schema-checked, de-duplicated rows for everything downstream; bad rows quarantined."""

    SPEC_CLASS = RowCleanerSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, examples, schema=None):
        super().__init__(
            spec=RowCleanerSpec(
                examples=examples,
                schema=schema,
                **{
                    q.CLEANED_EXAMPLES: types.Channel(type=standard_artifacts.Examples),
                    q.QUARANTINE: types.Channel(type=QuarantinedExamples),
                },
            )
        )
