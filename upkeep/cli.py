"""`mlops gc` and `mlops store backup|restore|check`.

Defaults come from the dataset's locations (metadata/locations.py) and its spec's `retention:`
block; every flag overrides one. Exit status (cli_support.Exit): OK done (or nothing to do),
REJECTED `store check` found a disagreement (after --repair: unnamed files remain), FAILED could
not run, INPUT_MISSING no such store, backup or pipeline (one line on stderr).
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import socket
import sys

import click

from cli_support import Exit, debug_option, handle_errors


def _one_line_errors(f):
    """cli_support's one line: a bad --dataset is FAILED; MetadataError and UpkeepError carry
    their own status."""
    from modules.dataset_spec import SpecError

    return debug_option(handle_errors(known={SpecError: Exit.FAILED})(f))


def _where(dataset, metadata, pipeline_name, pipeline_root, serving_dir):
    """(spec, metadata url, pipeline name, pipeline root, serving dir) with overrides applied."""
    from metadata.locations import of_spec
    from modules import dataset_spec

    spec = dataset_spec.load(dataset)
    where = of_spec(spec)
    name = pipeline_name or where.pipeline_name
    root = pipeline_root or os.path.join(where.output_dir, name)
    return spec, metadata or where.metadata, name, root, serving_dir or where.serving_dir


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


_COMMON = [
    click.option("--dataset", default=None, help="Dataset spec whose locations are the defaults."),
    click.option(
        "--metadata", envvar="MLOPS_METADATA", default=None, help="Store: SQLite path or URL."
    ),
    click.option("--pipeline-name", default=None, help="[default: <dataset>_pipeline]"),
    click.option("--pipeline-root", default=None, help="Where the runs' outputs are."),
]


def _common(f):
    for option in reversed(_COMMON):
        f = option(f)
    return f


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@_common
@click.option("--serving-dir", default=None, help="Model base path (served versions).")
@click.option("--model-config", default=None, help="[default: models.config beside it]")
@click.option("--model-name", default=None, help="Its name in models.config [default: dataset's].")
@click.option("--keep-last", type=click.IntRange(min=1), default=None, help="Keep the last N runs.")
@click.option(
    "--keep-days", type=click.FloatRange(min=0), default=None, help="Keep runs newer than D days."
)
@click.option("--apply", "do_apply", is_flag=True, help="Delete (default: print the plan only).")
@click.option("--show-kept", is_flag=True, help="List every kept artifact and why.")
@click.option("--json", "as_json", is_flag=True)
@_one_line_errors
def gc(
    dataset,
    metadata,
    pipeline_name,
    pipeline_root,
    serving_dir,
    model_config,
    model_name,
    keep_last,
    keep_days,
    do_apply,
    show_kept,
    as_json,
) -> None:
    """Delete old runs' artifacts, keeping the served, labelled and latest blessed models'
    lineage and the drift baseline; a dry-run plan unless --apply."""

    from metadata.store import open_store
    from upkeep import gc as gc_lib

    spec, url, name, root, serving = _where(
        dataset, metadata, pipeline_name, pipeline_root, serving_dir
    )
    policy = dataclasses.replace(
        spec.retention,
        **{
            k: v
            for k, v in {"keep_last": keep_last, "keep_days": keep_days}.items()
            if v is not None
        },
    )
    store = open_store(url, writable=do_apply)
    the_plan = gc_lib.plan(
        store,
        pipeline_name=name,
        pipeline_root=root,
        serving_dir=serving,
        model_name=model_name or spec.name,
        policy=policy,
        model_config=model_config,
    )
    result = gc_lib.apply(store, the_plan, _who()) if do_apply else None
    if as_json:
        out = the_plan.to_json()
        if result:
            out["applied"] = dataclasses.asdict(result)
        click.echo(json.dumps(out, indent=2))
        return
    verb = "Deleted" if result else "Would delete"
    for item in the_plan.deleted:
        click.echo(_row("delete", item, item.uri))
    for item in the_plan.kept if show_kept else ():
        click.echo(_row("keep", item, item.reason))
    click.echo(
        f"{verb} {len(the_plan.deleted)} artifact(s), {_human(the_plan.bytes_freed)}; "
        f"kept {len(the_plan.kept)} ({_human(the_plan.bytes_kept)}) under policy "
        f"keep_last={policy.keep_last} keep_days={policy.keep_days:g}."
    )
    if result:
        click.echo(
            f"Marked DELETED in {store.where}; audit record: execution "
            f"{result.audit_execution_id} ({result.seconds:.2f} s)."
        )
    elif the_plan.deleted:
        click.echo("Dry run: nothing deleted. Re-run with --apply to delete.")


def _row(what: str, item, tail: str) -> str:
    return f"  {what:<6} #{item.artifact_id:<5} {item.type:<22} {_human(item.bytes):>10}  {tail}"


def _who() -> str:

    return os.environ.get("MLOPS_ACTOR") or f"{getpass.getuser()}@{socket.gethostname()}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def store() -> None:
    """The metadata store: backup, restore, and a check that it agrees with the files."""


@store.command("backup")
@click.argument("target")
@click.option("--dataset", default=None, help="Dataset whose store is the default.")
@click.option("--metadata", envvar="MLOPS_METADATA", default=None, help="SQLite store path.")
@_one_line_errors
def backup_command(target, dataset, metadata) -> None:
    """Copy the SQLite store to TARGET, consistently, even while a run writes to it."""
    from upkeep import store_backup

    _, url, *_ = _where(dataset, metadata, None, None, None)
    written = store_backup.backup(url, target)
    click.echo(f"Backed up {store_backup.sqlite_path(url)} to {written}")


@store.command("restore")
@click.argument("backup_file")
@click.option("--dataset", default=None, help="Dataset whose store is the default.")
@click.option("--metadata", envvar="MLOPS_METADATA", default=None, help="SQLite store path.")
@_one_line_errors
def restore_command(backup_file, dataset, metadata) -> None:
    """Replace the SQLite store with BACKUP_FILE (while nothing writes to the store)."""
    from upkeep import store_backup

    _, url, *_ = _where(dataset, metadata, None, None, None)
    written = store_backup.restore(backup_file, url)
    click.echo(f"Restored {backup_file} to {written}")


@store.command("check")
@_common
@click.option("--repair", is_flag=True, help="Mark artifacts whose files are missing DELETED.")
@click.option("--json", "as_json", is_flag=True)
@_one_line_errors
def check_command(dataset, metadata, pipeline_name, pipeline_root, repair, as_json) -> None:
    """Artifacts whose files are missing, and output files no artifact names."""
    from metadata.store import open_store
    from upkeep import store_check

    _, url, name, root, _ = _where(dataset, metadata, pipeline_name, pipeline_root, None)
    store_ = open_store(url, writable=repair)
    report = store_check.check(store_, pipeline_name=name, pipeline_root=root)
    result = None
    if repair and report.missing:
        result = store_check.repair(store_, report, pipeline_root=root, who=_who())
    if as_json:
        out = report.to_json()
        out["repaired"] = result.deleted_ids if result else []
        click.echo(json.dumps(out, indent=2))
    else:
        for item in report.missing:
            click.echo(f"missing  #{item.artifact_id} {item.type}: {item.uri}")
        for path in report.unnamed:
            click.echo(f"unnamed  {path}")
        click.echo(
            f"{len(report.missing)} artifact(s) with missing files, "
            f"{len(report.unnamed)} output dir(s) no artifact names "
            f"({_human(store_check.unnamed_bytes(report))})."
        )
        if result:
            click.echo(
                f"Marked {len(result.deleted_ids)} DELETED; audit record: execution "
                f"{result.audit_execution_id}."
            )
    if report.unnamed or (report.missing and not repair):
        sys.exit(Exit.REJECTED)
