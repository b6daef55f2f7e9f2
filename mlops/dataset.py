"""`mlops dataset init NAME --from data.csv --label COLUMN`: a new dataset from one CSV file
(pipeline/dataset_draft.py drafts it). Whatever stops it is one line on stderr with the status of
its kind (cli_support.Exit: a CSV that cannot be drafted BAD_INPUT, a missing one INPUT_MISSING,
an existing dataset REJECTED), and nothing is written."""

from __future__ import annotations

from pathlib import Path

import click

from cli_support import Exit, debug_option, handle_errors
from modules import dataset_spec
from modules.dataset_spec import TASKS
from pipeline.dataset_draft import init


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def dataset() -> None:
    """Datasets: describe a new one from a CSV (docs/datasets.md)."""


@dataset.command("init")
@click.argument("name")
@click.option("--from", "csv_path", required=True, help="The CSV file (header row + data).")
@click.option("--label", required=True, help="The label column.")
@click.option(
    "--task",
    type=click.Choice(TASKS),
    default=None,
    help="Default: guessed from the label (text or 2 values: classification; numbers: regression).",
)
@click.option(
    "--datasets-dir",
    default=str(dataset_spec.DATASETS_DIR),
    show_default=True,
    help="Where datasets/NAME/ is written.",
)
@click.option(
    "--data-dir",
    default=str(dataset_spec.PROJECT_ROOT / "data"),
    show_default=True,
    help="Where data/NAME/span-1/ is written.",
)
@click.option("--force", is_flag=True, help="Replace an existing dataset of that name.")
@debug_option
@handle_errors(known={dataset_spec.SpecError: Exit.BAD_INPUT})
def init_command(
    name: str,
    csv_path: str,
    label: str,
    task: str | None,
    datasets_dir: str,
    data_dir: str,
    force: bool,
) -> None:
    """Draft datasets/NAME/dataset.yaml + schema.pbtxt from a CSV and lay it out as span 1."""
    path, d = init(name, csv_path, label, task, datasets_dir, data_dir, force)
    for warning in d.warnings:
        click.echo(f"warning: {warning}", err=True)
    spec = d.spec
    click.echo(
        f"Dataset {name}: {spec['task']} on label {spec['label']['name']}, "
        f"{len(d.rows)} rows, {len(d.header) - 1} columns besides the label"
    )
    click.echo(f"  spec    {path}")
    click.echo(f"  schema  {path.parent / dataset_spec.SCHEMA_FILE}")
    click.echo(f"  data    {Path(data_dir) / name / 'span-1' / 'data.csv'}")
    click.echo(f"Review both, then: python runners/local_runner.py --dataset {name}")
