"""The local runner's command line: failures before any component runs are one clear line."""

from __future__ import annotations

import os
import subprocess
import sys

from cli_support import Exit
from tests.paths import PROJECT_ROOT

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/x"


def test_unreachable_metadata_store_is_one_line_and_exit_2(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "runners" / "local_runner.py"),
            "--metadata",
            UNREACHABLE,
            "--output-dir",
            str(tmp_path / "out"),
            "--serving-model-dir",
            str(tmp_path / "serving"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == Exit.FAILED == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "metadata store" in line]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("Pipeline not started: cannot open the metadata store ")
    assert "postgresql://nobody@127.0.0.1:1/x" in lines[0]
    assert not (tmp_path / "out").exists()  # nothing ran, nothing written


def test_malformed_metadata_url_is_one_line_and_exit_2(tmp_path):
    from pipeline.config import PipelineConfig
    from pipeline.local.run import run_pipeline

    config = PipelineConfig(metadata="ftp://host/x", output_dir=str(tmp_path / "out"))
    assert run_pipeline(config) == (Exit.FAILED, None)


def test_the_runner_reads_its_flags_without_loading_tensorflow():
    """The up-to-date re-run answers from ML Metadata and file fingerprints before TFX runs
    (0.5 s): nothing the runner imports to read its flags may pull in TensorFlow, TFX or TFMA
    (a flag's choices once imported the Evaluator's executor, and a re-run took 13 s)."""
    code = (
        "import sys\n"
        "import runners.local_runner\n"
        "print('LOADED', sorted(m for m in ('tensorflow', 'tfx', 'tensorflow_model_analysis') "
        "if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LOADED []" in proc.stdout, proc.stdout
