"""Where the app finds the metadata store and the model server.

`mlops ui` passes its flags to the Streamlit process as environment variables, so every page
(and Streamlit's AppTest) reads one consistent set without a config file.
"""

from __future__ import annotations

import dataclasses
import os

from metadata.locations import locations
from modules.dataset_spec import DEFAULT_DATASET

_DEFAULTS = locations(DEFAULT_DATASET)
ENV_PREFIX = "MLOPS_UI_"


@dataclasses.dataclass(frozen=True)
class Settings:
    # The dataset spec (name under datasets/ or dataset.yaml path): the predict form's fields
    # and the encoding of the rows sent to the model server.
    dataset: str = _DEFAULTS.dataset
    metadata: str = _DEFAULTS.metadata
    pipeline_name: str = _DEFAULTS.pipeline_name
    model_name: str = _DEFAULTS.model_name
    serving_dir: str = _DEFAULTS.serving_dir
    # TF Serving's model config file that holds the version labels ('': models.config beside
    # serving_dir, as `mlops models`); the Models page promotes and rolls back through it.
    model_config: str = ""
    schema_path: str = _DEFAULTS.schema_path
    server_host: str = "127.0.0.1"
    rest_port: int = 8501
    grpc_port: int = 8500
    # Version labels the Models page asks the server about (e.g. stable,canary from the server's
    # --model_config_file): TF Serving's status API cannot list them, so they are probed by name.
    labels: tuple[str, ...] = ()
    # `mlops serve --request_log_dir`: enables the skew report on the Serving page.
    request_log_dir: str = ""
    cache_ttl: int = 30

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + field.name.upper())
            if raw is None:
                continue
            if field.type == "int":
                values[field.name] = int(raw)
            elif field.name == "labels":
                values[field.name] = tuple(x.strip() for x in raw.split(",") if x.strip())
            else:
                values[field.name] = raw
        return cls(**values)

    def for_dataset(self, dataset: str) -> Settings:
        """These settings for another dataset (the web app's dataset switcher): that dataset's
        pipeline, model, schema and serving dir (a sibling of this one: one serving root holds
        every model), the same store and server. The dataset the app started with keeps its
        settings as given (flags may have overridden its defaults)."""
        if dataset in ("", self.dataset):
            return self
        other = locations(dataset)
        return dataclasses.replace(
            self,
            dataset=other.dataset,
            pipeline_name=other.pipeline_name,
            model_name=other.model_name,
            serving_dir=os.path.join(os.path.dirname(self.serving_dir), other.model_name),
            schema_path=other.schema_path,
        )

    def datasets(self) -> list[str]:
        """What the switcher offers: every dataset under datasets/, and this one."""
        from modules import dataset_spec

        names = dataset_spec.available()
        return names if self.dataset in names else [self.dataset, *names]

    def spec(self):
        """The dataset spec these settings name (modules/dataset_spec.DatasetSpec)."""
        from modules import dataset_spec

        return dataset_spec.load(self.dataset)

    def to_env(self) -> dict[str, str]:
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            out[ENV_PREFIX + field.name.upper()] = (
                ",".join(value) if isinstance(value, tuple) else str(value)
            )
        return out
