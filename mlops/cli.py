"""`mlops`: one entry point whose subcommands live in the packages that own them.

Subcommands are imported lazily so that `mlops lineage --help` does not pay TensorFlow's import
time and a broken optional package cannot take the whole CLI down.
"""

from __future__ import annotations

import importlib

import click

# name -> "module:attribute" of a click command or group.
SUBCOMMANDS: dict[str, str] = {
    "lineage": "lineage.cli:lineage",
    "serve": "serving.cli:serve",
    "predict": "serving.cli:predict",
    "data": "mlops.data:data",
    "dataset": "mlops.dataset:dataset",
    "models": "registry.cli:models",
    "ui": "apps.ui.cli:ui",
    "monitor": "monitoring.cli:monitor",
    "gc": "upkeep.cli:gc",
    "store": "upkeep.cli:store",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(SUBCOMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in SUBCOMMANDS:
            module_name, attr = SUBCOMMANDS[name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """End-to-end TFX taxi pipeline: serving, prediction clients and lineage."""


if __name__ == "__main__":
    main()
