"""Where the checkout is, for tests that read its files (docs, deploy/, data/): one definition, so
no test needs the pipeline package just to find the repository."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
