"""`make bench-pipeline` runs this project from a private copy of its code (so touching a module
never edits the checkout): the copy must hold everything a run reads, dataset specs included."""

import os
import subprocess
import sys

from bench import pipeline_bench

PROBE = (
    "import os; from modules import features, dataset_spec; s = features.SPEC; "
    "print(s.name, dataset_spec.DATASETS_DIR, s.schema_path, os.path.exists(s.schema_path))"
)


def test_the_benchmarks_private_copy_resolves_the_dataset_spec_and_schema(tmp_path):
    code = pipeline_bench.copy_code(tmp_path / "project")
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(code)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    name, datasets_dir, schema, schema_exists = out.stdout.split()
    assert name == "taxi"
    assert datasets_dir == str(code / "datasets")  # the copy's, not the checkout's
    assert schema.startswith(str(code)) and schema_exists == "True"
