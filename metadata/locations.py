"""Where one dataset's things live: its pipeline and model names, data, schema, run outputs,
metadata store and served models.

Every command that takes `--dataset` (the runners, `mlops data|models|monitor|lineage|predict`,
the web app) fills its defaults from here, so a dataset's model, store and serving directory are
named in one place. The names follow the dataset spec: `<name>_pipeline` and model `<name>`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import model_layout
from metadata.connection import LOCAL_OUTPUT_DIR, sqlite_store_path
from model_layout import model_config
from modules import dataset_spec


@dataclasses.dataclass(frozen=True)
class DatasetLocations:
    """A dataset's default names and paths (a run or a command may override each)."""

    dataset: str  # a name under datasets/, or a dataset.yaml path outside the checkout
    name: str
    pipeline_name: str
    model_name: str
    data_root: str
    input_pattern: str
    schema_path: str
    output_dir: str = str(LOCAL_OUTPUT_DIR)

    @property
    def metadata(self) -> str:
        """The local runner's SQLite store under the output dir."""
        return sqlite_store_path(self.output_dir)

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output_dir, self.pipeline_name)

    @property
    def serving_dir(self) -> str:
        """TF Serving's model base path: the Pusher writes <this>/<version>/."""
        return self.serving_dir_in(model_layout.SERVING_ROOT)

    def serving_dir_in(self, serving_root: str | os.PathLike) -> str:
        """The model's base path under another serving root (<root>/<model name>)."""
        return os.path.join(os.path.abspath(serving_root), self.model_name)

    @property
    def model_config(self) -> str:
        """The serving root's shared TF Serving model config, holding every model's entry."""

        return model_config.beside(self.serving_dir)


def pipeline_name(name: str) -> str:
    return f"{name}_pipeline"


def locations(dataset: str | os.PathLike | None = None) -> DatasetLocations:
    """The locations of a dataset spec (default: $MLOPS_DATASET or taxi). A SpecError (one line)
    says why a spec cannot be used."""
    return of_spec(dataset_spec.load(dataset))


def of_spec(spec: dataset_spec.DatasetSpec) -> DatasetLocations:
    """The locations of a loaded dataset spec."""
    in_repo = Path(spec.spec_path) == dataset_spec.spec_path(spec.name)
    return DatasetLocations(
        dataset=spec.name if in_repo else spec.spec_path,
        name=spec.name,
        pipeline_name=pipeline_name(spec.name),
        model_name=spec.name,
        data_root=spec.data_root,
        input_pattern=spec.input_pattern,
        schema_path=spec.schema_path,
    )
