"""Every marked command in docs/serving.md runs as written against the pipeline-pushed model.

Blocks are marked with an HTML comment on the line before their fence: `<!-- test: serving -->`
(client commands, each run in a fresh bash of its own, as a reader who pastes one block into a new
terminal) and `<!-- test: serving-server -->` (the server, started first). They run from a
directory laid out like a checkout; the only substitution is the default ports 8500/8501 -> the
test server's free ports (docs/serving.md, "How the examples below are tested", says the same).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from serving import testing
from tests.paths import PROJECT_ROOT

ROOT = PROJECT_ROOT
DOC = ROOT / "docs" / "serving.md"
ROW = ROOT / "docs" / "examples" / "row.json"
_BLOCK = re.compile(r"^<!-- test: (serving|serving-server) -->\n```bash\n(.*?)\n```$", re.M | re.S)
_JSON_BLOCK = re.compile(r"^```json\n(.*?)\n```$", re.M | re.S)
# Shell variables a block may use without setting them: the environment of any shell.
_ENVIRONMENT = {"HOME", "PATH", "PWD", "USER"}


def marked_blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in _BLOCK.finditer(text)]


def _ports(cmd: str, grpc_port: int, rest_port: int) -> str:
    return re.sub(r"\b8501\b", str(rest_port), re.sub(r"\b8500\b", str(grpc_port), cmd))


def test_docs_have_marked_blocks():
    kinds = [k for k, _ in marked_blocks(DOC.read_text())]
    assert kinds.count("serving-server") == 1 and kinds.count("serving") >= 5


def used_but_unset(block: str) -> set[str]:
    """Shell variables `block` reads ($X, ${X}) without assigning them (X=...) itself."""
    code = "\n".join(
        line.split("#", 1)[0] if "'" not in line else line for line in block.splitlines()
    )
    used = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", code))
    assigned = set(re.findall(r"(?:^|[\s;(])([A-Za-z_][A-Za-z0-9_]*)=", code, re.M))
    return used - assigned - _ENVIRONMENT


def test_every_block_sets_the_shell_variables_it_reads():
    """A reader can run any one block in a fresh shell: none reads a variable another block set
    (the gap that sent `Malformed request` from a fresh shell)."""
    blocks = [body for kind, body in marked_blocks(DOC.read_text()) if kind == "serving"]
    assert [used_but_unset(b) for b in blocks] == [set()] * len(blocks)
    assert used_but_unset('V=$(curl x)\ncurl "$V" "$EX"') == {"EX"}  # the check can fail


def test_the_row_shown_is_the_row_the_blocks_read():
    shown = [json.loads(m.group(1)) for m in _JSON_BLOCK.finditer(DOC.read_text())]
    assert json.loads(ROW.read_text()) in shown
    blocks = [body for kind, body in marked_blocks(DOC.read_text()) if kind == "serving"]
    assert sum("docs/examples/row.json" in b for b in blocks) >= 4


@pytest.fixture
def checkout_like(small_pipeline, tmp_path) -> Path:
    """A directory laid out like a checkout whose serving_model/taxi is the pipeline's push."""
    root = tmp_path / "checkout"
    (root / "serving_model").mkdir(parents=True)
    (root / "serving_model" / "taxi").symlink_to(small_pipeline.serving_model_dir)
    shutil.copytree(ROOT / "deploy" / "serving", root / "deploy" / "serving")
    (root / "data").symlink_to(ROOT / "data")
    (root / "docs").symlink_to(ROOT / "docs")
    (root / ".venv").symlink_to(sys.prefix)  # the whole venv: python finds its pyvenv.cfg
    return root


@pytest.mark.slow
@pytest.mark.timeout(2400)  # includes the small_pipeline fixture on a loaded machine
def test_documented_serving_commands_work_as_written(checkout_like):
    blocks = marked_blocks(DOC.read_text())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    grpc_port, rest_port = testing.free_port(), testing.free_port()
    (server_cmd,) = [body for kind, body in blocks if kind == "serving-server"]
    server_cmd = (
        server_cmd.replace("\\\n", " ") + f" --port={grpc_port} --rest_api_port={rest_port}"
    )
    log = open(checkout_like / "server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        ["bash", "-c", "exec " + server_cmd],
        cwd=checkout_like,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 180
        while True:
            assert server.poll() is None, (checkout_like / "server.log").read_text()[-3000:]
            try:
                r = requests.get(f"http://localhost:{rest_port}/v1/models/taxi", timeout=2)
                if r.status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.time() < deadline, "documented server did not come up"
            time.sleep(0.5)
        # Each block in a fresh bash of its own, as a reader who pastes one block into a new
        # terminal: no shell variable carries over from the block before.
        outputs = []
        for i, (kind, body) in enumerate(blocks):
            if kind != "serving":
                continue
            out = subprocess.run(
                ["bash", "-c", "set -euo pipefail\n" + _ports(body, grpc_port, rest_port)],
                cwd=checkout_like,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert out.returncode == 0, (
                f"block {i}\nstderr:\n{out.stderr[-4000:]}\nstdout:\n{out.stdout[-2000:]}"
            )
            outputs.append(out.stdout)
        stdout = "".join(outputs)
        assert '"predictions"' in stdout and '"results"' in stdout
        rows = [json.loads(line) for line in outputs[-1].splitlines() if line.startswith('{"row"')]
        assert len(rows) == 20 + 20 + 1 and all(0.0 <= r["probabilities"][0] <= 1.0 for r in rows)
    finally:
        server.terminate()
        server.wait(30)
        log.close()
