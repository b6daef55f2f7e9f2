"""The GitHub Actions workflow (.github/workflows/ci.yml) is valid and says what .ci/run says.

No workflow linter installs from PyPI here (actionlint is a Go binary), so the YAML is checked
against tests/github_workflow.schema.json, a small structural schema written from GitHub's
documented workflow keys (a misspelt key or a step with neither `uses` nor `run` fails), and then
for consistency: every test job runs .ci/run, the one test command, with a Makefile target.
"""

from __future__ import annotations

import copy
import json
import re

import jsonschema
import pytest
import yaml

from tests.paths import PROJECT_ROOT

WORKFLOW = PROJECT_ROOT / ".github" / "workflows" / "ci.yml"
SCHEMA = PROJECT_ROOT / "tests" / "github_workflow.schema.json"
CI_RUN = PROJECT_ROOT / ".ci" / "run"


def _workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the bare key `on` as the boolean true; GitHub reads it as "on".
    if True in data:
        data["on"] = data.pop(True)
    return data


def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _make_targets() -> set[str]:
    text = (PROJECT_ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*):", text, re.MULTILINE))


def _runs(job: dict) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def test_workflow_matches_the_schema():
    errors = sorted(_validator().iter_errors(_workflow()), key=str)
    assert errors == []


@pytest.mark.parametrize(
    "break_it",
    [
        lambda w: w["jobs"]["lint"].pop("runs-on"),
        lambda w: w["jobs"]["lint"]["steps"].append({"name": "neither uses nor run"}),
        lambda w: w["jobs"]["lint"]["steps"][0].update(runs="make lint"),
        lambda w: w["on"].update(schedule=[{"cron": "every night"}]),
        lambda w: w["jobs"]["lint"].update(permisions={"contents": "read"}),
    ],
)
def test_the_schema_rejects_a_broken_workflow(break_it):
    workflow = copy.deepcopy(_workflow())
    break_it(workflow)
    assert list(_validator().iter_errors(workflow))


def test_every_test_job_runs_the_one_test_command():
    workflow = _workflow()
    assert CI_RUN.read_text().rstrip().endswith('make "${CI_MAKE_TARGET:-test}"')
    targets = _make_targets()
    tested = {}
    for name, job in workflow["jobs"].items():
        for command in _runs(job):
            assert "pytest" not in command, f"{name}: tests run through .ci/run, not pytest"
            for target in re.findall(r"\bmake (\w[\w-]*)", command):
                assert target in targets, f"{name}: no Makefile target {target!r}"
            if command == "bash .ci/run":
                tested[name] = (job.get("steps")[-1].get("env") or {}).get("CI_MAKE_TARGET", "test")
    assert tested == {"fast-tests": "test-fast", "full-suite": "test"}
    assert set(tested.values()) <= targets


def test_triggers_lint_fast_nightly_spec_and_release():
    workflow = _workflow()
    on, jobs = workflow["on"], workflow["jobs"]
    assert on["push"]["branches"] == ["main"] and on["push"]["tags"] == ["v*"]
    assert on["schedule"][0]["cron"]
    assert _runs(jobs["lint"]) == ["make lint"]
    assert "schedule" in jobs["full-suite"]["if"] and "!= 'schedule'" in jobs["fast-tests"]["if"]
    assert any(c.startswith("make kubeflow IMAGE=") for c in _runs(jobs["kubeflow-spec"]))
    release = "\n".join(_runs(jobs["release"]))
    assert "git describe --tags" in release and "make image" in release
    assert "gh release upload" in release and "taxi-pipeline.yaml" in release
    assert "refs/tags/v" in jobs["release"]["if"]
