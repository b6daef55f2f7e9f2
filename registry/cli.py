"""`mlops models`: list versions, promote / roll back labels, retire, history, model cards.

Every failure is one line on stderr (a traceback only with --debug) with the project's exit
status (cli_support.Exit: a refused action is REJECTED, 1), and a refused command leaves the
config file and the served versions as they were.
"""

from __future__ import annotations

import json
import os
import sys

import click

from cli_support import CommandError, Exit, debug_option, handle_errors
from metadata.locations import locations
from model_layout import model_config
from modules.dataset_spec import DEFAULT_DATASET, SpecError
from registry.compare import CompareError, Thresholds, prometheus_samples, render, server_samples
from registry.compare import compare as run_compare
from registry.errors import RegistryError
from registry.operations import Registry
from registry.versions import parse_version
from serving_api import DEFAULT_METRICS_PATH

_DEFAULTS = locations(DEFAULT_DATASET)
SERVER_ENV = "MLOPS_SERVER"
DEFAULT_SERVER = "127.0.0.1:8501"


def server_address(flag: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The model server to ask, or None for none. One rule for flag and environment: the flag
    wins, then MLOPS_SERVER when it is set at all, then the default; an empty value from either
    means no server (click's envvar would treat MLOPS_SERVER='' as unset and ask the default)."""
    env = os.environ if environ is None else environ
    value = flag if flag is not None else env.get(SERVER_ENV, DEFAULT_SERVER)
    return value.strip() or None


def one_line(text: object) -> str:
    """`text` on one line: newlines and other control characters escaped, as a reason recorded
    with them should print in `history` (one line per action)."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text)
    )


# The registry's own refusals are REJECTED; everything else follows cli_support's rules.
_one_line_errors = handle_errors(known={RegistryError: Exit.REJECTED})


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--dataset",
    envvar="MLOPS_DATASET",
    default=None,
    help="Whose model: the dataset's model name, serving dir and store are the defaults below "
    f"(a name under datasets/ or a dataset.yaml path). [default: {_DEFAULTS.name}]",
)
@click.option(
    "--base-path",
    envvar="MLOPS_MODEL_BASE_PATH",
    default=None,
    help="The model base path (the Pusher's serving_model/<name>). "
    f"[default: the dataset's, {_DEFAULTS.serving_dir}]",
)
@click.option(
    "--config",
    "config_path",
    envvar="MLOPS_MODEL_CONFIG",
    default=None,
    help="TF Serving model config file, shared by every model of the serving root "
    "[default: models.config beside the base path].",
)
@click.option(
    "--metadata",
    envvar="MLOPS_METADATA",
    default=None,
    help=f"ML Metadata store: SQLite path, URL or .pbtxt. [default: {_DEFAULTS.metadata}]",
)
@click.option(
    "--model-name", default=None, help=f"[default: the dataset's, {_DEFAULTS.model_name}]"
)
@click.option(
    "--server",
    default=None,
    help=f"REST address of the running model server ('' for none). [default: ${SERVER_ENV} "
    f"when set, where empty also means none; else {DEFAULT_SERVER}]",
)
@debug_option
@click.pass_context
@_one_line_errors
def models(ctx, dataset, base_path, config_path, metadata, model_name, server) -> None:
    """Operate served model versions: labels, rollback, retire, audit trail, model cards."""

    try:
        where = locations(dataset) if dataset else _DEFAULTS
    except SpecError as e:
        raise CommandError(str(e), Exit.FAILED) from e
    base_path = os.path.abspath(base_path or where.serving_dir)
    config_path = config_path or model_config.beside(base_path)
    ctx.obj = {
        "registry": Registry(
            base_path,
            config_path,
            metadata or where.metadata,
            model_name or where.model_name,
            server_address(server),
        ),
    }


def _registry():
    return click.get_current_context().obj["registry"]


def _version(text: str) -> int:

    return parse_version(text)


@models.command("list")
@click.option("--json", "as_json", is_flag=True)
@_one_line_errors
def list_cmd(as_json: bool) -> None:
    """Every version under the base path: pushed at, run, span, evaluation, labels, server state."""
    rows = _registry().list()
    if as_json:
        click.echo(json.dumps(rows, indent=1, default=str))
        return
    if not rows:
        click.echo(f"no versions under {_registry().base_path}")
        return
    click.echo(
        f"{'version':>12}  {'labels':<16} {'server':<11} {'pushed at (UTC)':<26} "
        f"{'span':>4} {'auc':>6} {'acc':>6} {'blessed':<7} {'baseline':>8}  run"
    )
    for r in rows:

        def f(v, fmt="{:.3f}"):
            return fmt.format(v) if isinstance(v, float) else ("" if v is None else str(v))

        click.echo(
            f"{r['version']:>12}  {','.join(r['labels']) or '-':<16} "
            f"{f(r['server_state']) or 'no server':<11} {r['pushed_at']:<26} "
            f"{f(r.get('span')):>4} {f(r.get('auc')):>6} {f(r.get('accuracy')):>6} "
            f"{f(r.get('blessed')):<7} {f(r.get('baseline_model')) or '-':>8}  {r.get('run', '')}"
        )


def _print_action(action) -> None:
    arrow = f"{action.from_version or '-'} -> {action.to_version or '(archive)'}"
    label = f" {action.label}" if action.label else ""
    click.echo(
        f"{action.action}{label}: {arrow} (recorded as ML Metadata execution "
        f"#{action.execution_id})"
    )


@models.command()
@click.argument("version")
@click.option("--label", required=True, help="stable, canary or any name.")
@click.option("--reason", required=True, help="Why; kept in the audit trail.")
@_one_line_errors
def promote(version: str, label: str, reason: str) -> None:
    """Point LABEL at VERSION in the model config file (the server picks it up by polling)."""
    _print_action(_registry().promote(_version(version), label, reason))


@models.command()
@click.option("--label", default="stable", show_default=True)
@click.option("--reason", default="", help="Why; kept in the audit trail.")
@_one_line_errors
def rollback(label: str, reason: str) -> None:
    """Point LABEL back at the version that held it before (from the audit trail)."""
    _print_action(_registry().rollback(label, reason))


@models.command()
@click.argument("version")
@click.option("--reason", default="", help="Why; kept in the audit trail.")
@_one_line_errors
def retire(version: str, reason: str) -> None:
    """Move VERSION to the archive beside the base path (never deleted; refused while labelled)."""
    _print_action(_registry().retire(_version(version), reason))


@models.command()
@click.option("--json", "as_json", is_flag=True)
@_one_line_errors
def history(as_json: bool) -> None:
    """Every push, promote, rollback and retire of the model, oldest first."""
    actions = _registry().history()
    if as_json:
        click.echo(json.dumps([a.to_json() for a in actions], indent=1))
        return
    for a in actions:
        label = f" {a.label}" if a.label else ""
        click.echo(
            f"{a.when}  {a.action}{label:<10} {a.from_version or '-':>12} -> "
            f"{a.to_version or '(archive)':<12} by {one_line(a.who)}: {one_line(a.reason)}"
        )


@models.command()
@click.argument("version")
@click.option(
    "--format", "fmt", type=click.Choice(["md", "html", "json"]), default="md", show_default=True
)
@_one_line_errors
def card(version: str, fmt: str) -> None:
    """Print the model card written at push time (the .html file opens in any browser)."""
    with open(_registry().card_path(_version(version), fmt)) as f:
        click.echo(f.read(), nl=False)


def _threshold(name: str):

    return getattr(Thresholds(), name)


@models.command()
@click.argument("baseline", default="stable")
@click.argument("candidate", default="canary")
@click.option(
    "--prometheus",
    default=None,
    help="Prometheus server URL to query instead of the model server at --server.",
)
@click.option(
    "--window",
    default=None,
    help="With --prometheus: compare increase() over this range (e.g. 30m); default: totals.",
)
@click.option(
    "--metrics-path",
    default=DEFAULT_METRICS_PATH,
    show_default=True,
    help="The model server's Prometheus path (mlops serve --metrics_path).",
)
@click.option(
    "--max-failure-ratio-increase",
    type=float,
    default=_threshold("max_failure_ratio_increase"),
    show_default=True,
    help="Worse when canary's failure ratio > stable's + this (the alert rule's threshold).",
)
@click.option(
    "--max-p99-ratio",
    type=float,
    default=_threshold("max_p99_ratio"),
    show_default=True,
    help="Worse when canary's p99 latency > this x stable's (the alert rule's threshold)...",
)
@click.option(
    "--p99-min-delta-ms",
    type=float,
    default=_threshold("p99_min_delta_ms"),
    show_default=True,
    help="...and at least this many ms slower.",
)
@click.option(
    "--max-mean-score-shift",
    type=float,
    default=_threshold("max_mean_score_shift"),
    show_default=True,
    help="Worse when |mean score difference| > this (the alert rule's threshold).",
)
@click.option(
    "--max-score-ks",
    type=float,
    default=_threshold("max_score_ks"),
    show_default=True,
    help="Worse when the score histograms' KS distance > max(this, critical value).",
)
@click.option(
    "--alpha",
    type=float,
    default=_threshold("alpha"),
    show_default=True,
    help="Significance of the score KS test and the p99 slow-tail test.",
)
@click.option(
    "--min-requests",
    type=int,
    default=_threshold("min_requests"),
    show_default=True,
    help="Fewer inference requests on either side: exit 2 (not enough traffic).",
)
@click.option("--json", "as_json", is_flag=True)
@_one_line_errors
def compare(baseline: str, candidate: str, **kw) -> None:
    """Is CANDIDATE (default: the canary label) worse than BASELINE (default: stable)?

    Reads per-version requests, failures, latency and predicted scores from the model server's
    metrics (or --prometheus). Exit status: 0 not worse, 1 worse, 2 could not compare.
    """

    registry = _registry()
    try:
        names = (
            "max_failure_ratio_increase",
            "max_p99_ratio",
            "p99_min_delta_ms",
            "max_mean_score_shift",
            "max_score_ks",
            "alpha",
            "min_requests",
        )
        thresholds = Thresholds(**{n: kw[n] for n in names})
        for name in names:
            value = getattr(thresholds, name)
            if not (value >= 0 and value < float("inf")):
                raise CompareError(f"--{name.replace('_', '-')} must be a number >= 0")
        if not 0 < thresholds.alpha < 1:
            raise CompareError("--alpha must be between 0 and 1")
        if kw["prometheus"]:
            samples = prometheus_samples(kw["prometheus"], registry.model_name, kw["window"])
        elif kw["window"]:
            raise CompareError("--window needs --prometheus (a server's metrics are totals)")
        elif not registry.server:
            raise CompareError("no --server or --prometheus to read metrics from")
        else:
            samples = server_samples(registry.server, kw["metrics_path"])
        labels = None
        if os.path.exists(registry.config_path):  # for servers that export no label metric
            labels = {k: str(v) for k, v in registry.labels().items()}
        result = run_compare(samples, registry.model_name, baseline, candidate, thresholds, labels)
    except (CompareError, RegistryError) as e:  # could not compare: not a "worse" answer
        raise CommandError(f"could not compare: {e}", Exit.FAILED) from e
    click.echo(json.dumps(result.to_json(), indent=1) if kw["as_json"] else render(result))
    sys.exit(Exit.REJECTED if result.worse else Exit.OK)
