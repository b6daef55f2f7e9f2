"""`mlops`: one entry point whose subcommands live in the packages that own them.

Subcommands are imported lazily so that `mlops lineage --help` does not pay TensorFlow's import
time and a broken optional package cannot take the whole CLI down.

The entry is also the one place that quiets the libraries under the subcommands: TensorFlow's
C++ start-up lines (CUDA "Unable to register factory", TensorRT) and the FutureWarnings Google's
client libraries print on import say nothing a user can act on, and they buried the one-line
errors the commands print. `mlops --verbose ...` keeps them.
"""

from __future__ import annotations

import importlib
import os
import warnings

import click

from cli_support import debug_option, run_click

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
# What quiet mode sets; child processes (`mlops ui`'s app and server) inherit it.
QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # C++ ERROR lines too: the CUDA factory lines are E-level
    "PYTHONWARNINGS": "ignore::FutureWarning",
}
_saved_env: dict[str, str | None] = {}


def quiet() -> None:
    """Silence TensorFlow's C++ logging and FutureWarnings, here and in child processes. Must
    run before TensorFlow is imported (TF reads the level when it loads)."""
    for key, value in QUIET_ENV.items():
        _saved_env.setdefault(key, os.environ.get(key))
        os.environ[key] = value
    warnings.filterwarnings("ignore", category=FutureWarning)


def unquiet() -> None:
    """Undo quiet(): `--verbose` shows everything the libraries print."""
    for key, value in _saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _saved_env.clear()
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    warnings.filterwarnings("default", category=FutureWarning)


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(SUBCOMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in SUBCOMMANDS:
            module_name, attr = SUBCOMMANDS[name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, name)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # type: ignore[override]
        # Before click parses anything: `mlops --help` imports every subcommand's module.
        quiet()
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        # Usage errors as one line too (cli_support.run_click), named `mlops ...` however run.
        run_click(super().main, prog_name or "mlops", args=args, complete_var=complete_var, **extra)


def _verbose(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    # Eager: runs while the group parses its options, before the subcommand's module is imported.
    if value:
        unquiet()
    return value


@click.group("mlops", cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--verbose",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=_verbose,
    help="Show TensorFlow's start-up logging and library warnings (silenced by default).",
)
@debug_option
def main() -> None:
    """End-to-end TFX taxi pipeline: serving, prediction clients and lineage."""


if __name__ == "__main__":
    main()
