"""`mlops lineage ...`: run history and provenance from the pipeline's ML Metadata store.

Every command takes --metadata (a SQLite path, a sqlite:// / postgresql:// / mysql:// URL or a
ConnectionConfig .pbtxt; default: $MLMD_CONNECTION, else the local runner's SQLite file) and
--json for scripts. Failures print one clear line with the project's exit status
(cli_support.Exit: an unknown run, target or store is INPUT_MISSING); --debug shows the traceback.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from cli_support import CommandError, Exit, debug_option, handle_errors

F = TypeVar("F", bound=Callable[..., Any])
CONNECTION_ENV = "MLMD_CONNECTION"


def _default_metadata() -> str:
    if os.environ.get(CONNECTION_ENV):
        return os.environ[CONNECTION_ENV]
    from metadata.connection import sqlite_store_path

    return sqlite_store_path()


def _handle_errors(func: F) -> F:
    """cli_support's one line and exit status (a MetadataError carries its own), and an
    unexpected MLMD error's text scrubbed of the store's password."""

    @functools.wraps(func)
    def scrubbed(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (OSError, CommandError, click.ClickException):
            raise
        except Exception as exc:  # MLMD errors surface here, e.g. a store dropped mid-query
            from metadata.connection import scrub

            config = click.get_current_context().find_root().meta.get("lineage.config")
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            text = scrub(text, config) if config is not None else text
            raise CommandError(f"{type(exc).__name__}: {text}", Exit.FAILED) from exc

    return handle_errors()(scrubbed)  # type: ignore[return-value]


def _store(ctx: click.Context) -> Any:
    from metadata.connection import ConnectionConfigError, connection_config_from_url
    from metadata.store import MetadataError, open_store

    obj = ctx.find_root().meta
    if "lineage.store" not in obj:
        try:
            config = connection_config_from_url(obj["lineage.metadata"])
        except ConnectionConfigError as exc:
            raise MetadataError(str(exc), Exit.FAILED) from None
        obj["lineage.config"] = config
        obj["lineage.store"] = open_store(config)
    return obj["lineage.store"]


def _emit(ctx: click.Context, data: Any, text: Callable[[], str]) -> None:
    if ctx.find_root().meta.get("lineage.json"):
        click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
    else:
        click.echo(text())


def _json_option(func: F) -> F:
    """--json is accepted both before and after the subcommand, as scripts write it either way."""

    def callback(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        if value:
            ctx.find_root().meta["lineage.json"] = True
        return value

    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        expose_value=False,
        callback=callback,
        help="Machine-readable JSON output.",
    )(func)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--metadata",
    "-m",
    default=None,
    metavar="URL|PATH",
    help="MLMD store: SQLite path, sqlite:///, postgresql://user@host:port/db, mysql://..., or a "
    "ConnectionConfig .pbtxt. Password from $MLMD_DB_PASSWORD. "
    f"Default: ${CONNECTION_ENV} or the local runner's SQLite file.",
)
@click.option(
    "--dataset",
    default=None,
    help="Only this dataset's pipeline runs (a name under datasets/ or a dataset.yaml path); "
    "default: every pipeline in the store.",
)
@_json_option
@debug_option
@click.pass_context
@_handle_errors
def lineage(ctx: click.Context, metadata: str | None, dataset: str | None) -> None:
    """Pipeline runs, artifacts, provenance and diffs from ML Metadata."""
    ctx.find_root().meta["lineage.metadata"] = metadata or _default_metadata()
    ctx.find_root().meta["lineage.pipeline"] = _pipeline_of(dataset)


def _pipeline_of(dataset: str | None) -> str | None:
    """The pipeline name of --dataset (None: every pipeline); a bad spec is one line, FAILED."""
    if not dataset:
        return None
    from metadata.locations import locations
    from modules.dataset_spec import SpecError

    try:
        return locations(dataset).pipeline_name
    except SpecError as e:
        raise CommandError(str(e), Exit.FAILED) from e


@lineage.command()
@click.option("--limit", type=int, default=None, help="Show at most this many runs.")
@_json_option
@click.pass_context
@_handle_errors
def runs(ctx: click.Context, limit: int | None) -> None:
    """Pipeline runs, newest first: per-component state and whether a model was pushed."""
    from lineage import queries, render

    data = queries.list_runs(_store(ctx), limit, ctx.find_root().meta.get("lineage.pipeline"))
    _emit(ctx, data, lambda: render.runs(data))


@lineage.command()
@click.option(
    "--type", "type_name", default=None, help="Artifact type, e.g. Model, PushedModel, Examples."
)
@click.option("--run", "run", default=None, help="Run id (or unique prefix, latest, previous).")
@click.option("--limit", type=int, default=None, help="Show at most this many artifacts.")
@_json_option
@click.pass_context
@_handle_errors
def artifacts(
    ctx: click.Context, type_name: str | None, run: str | None, limit: int | None
) -> None:
    """Artifacts, newest first: type, producing component, key properties and URI."""
    from lineage import queries, render

    data = queries.list_artifacts(
        _store(ctx), type_name, run, limit, ctx.find_root().meta.get("lineage.pipeline")
    )
    _emit(ctx, data, lambda: render.artifacts(data))


@lineage.command()
@click.argument("target")
@_json_option
@click.pass_context
@_handle_errors
def trace(ctx: click.Context, target: str) -> None:
    """Full upstream provenance of TARGET, down to the input files.

    TARGET: 'latest' (newest pushed model), a served version number or its directory under
    serving_model/, or an artifact id (PushedModel, Model, ...).
    """
    from lineage import queries, render

    result = queries.trace(_store(ctx), target)
    _emit(ctx, result.to_json(), lambda: render.trace(result))


@lineage.command()
@click.argument("run_a")
@click.argument("run_b")
@_json_option
@click.pass_context
@_handle_errors
def diff(ctx: click.Context, run_a: str, run_b: str) -> None:
    """What changed from RUN_A to RUN_B: inputs, schema, hyperparameters, metrics, outcome.

    Runs are ids from `runs`, unique prefixes, 'latest', 'previous' or 'latest~N'.
    """
    from lineage import queries, render

    data = queries.diff_runs(
        _store(ctx), run_a, run_b, ctx.find_root().meta.get("lineage.pipeline")
    )
    _emit(ctx, data, lambda: render.diff(data))


@lineage.command()
@click.argument("target")
@click.option("-o", "--output", required=True, help="Output file: .svg, .png or .dot.")
@click.option(
    "--engine",
    type=click.Choice(["auto", "graphviz", "builtin"]),
    default="auto",
    show_default=True,
    help="Renderer for svg/png: Graphviz's dot if installed, else the built-in layout.",
)
@_json_option
@click.pass_context
@_handle_errors
def graph(ctx: click.Context, target: str, output: str, engine: str) -> None:
    """Draw the lineage of TARGET (same targets as `trace`) to a file."""
    from lineage import graph as graph_lib
    from lineage import queries

    result = queries.trace(_store(ctx), target)
    renderer = graph_lib.write(result, output, engine=engine)
    data = {
        "output": os.path.abspath(output),
        "renderer": renderer,
        "artifacts": len(result.artifacts),
        "executions": len(result.executions),
        "bytes": os.path.getsize(output),
    }
    _emit(
        ctx,
        data,
        lambda: (
            f"wrote {data['output']} ({data['artifacts']} artifacts, "
            f"{data['executions']} executions, {renderer})"
        ),
    )


def main() -> None:
    """Stand-alone entry (`python -m lineage`)."""
    lineage(prog_name="lineage")
