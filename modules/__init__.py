"""User code of the pipeline (TFX loads these files through `module_file`), and the one place
that sets the process environment they need.

Importing this package sets it, so it must happen before TensorFlow is first imported. Every
entry point passes through here first: the user modules import `modules.features`;
`pipeline/__init__.py`, `mlops/__init__.py` and `tests/conftest.py` import this package; the
pipeline image's sitecustomize imports it when the Kubeflow container starts, before the TFX
entrypoint loads TensorFlow (tests/test_environment.py checks every path).
"""

import functools
import importlib.metadata
import os
import sys

# The Trainer, Tuner and Transform code is Keras 2 (tf_keras), which TFX 1.16 and TFMA need: with
# this set, TensorFlow resolves `tf.keras` to tf_keras instead of Keras 3.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow's C++ INFO lines (CPU features, ...) are noise in the runner's progress view.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# google-api-core scans every installed distribution once per Google package TFX loads; the
# installed set cannot change while a process runs, so one scan is kept (docs/design.md).
if not hasattr(importlib.metadata.packages_distributions, "cache_info"):
    importlib.metadata.packages_distributions = functools.lru_cache(maxsize=1)(
        importlib.metadata.packages_distributions
    )

# jsonschema's optional IRI format check imports rfc3987_syntax, which builds a Lark grammar at
# import: 2.6-3.1 s of every process that imports TFX's components (TFX -> its Kubernetes infra
# validator -> kubernetes_validate -> jsonschema). Nothing here validates IRIs, so the optional
# module is marked absent and jsonschema skips that one format (docs/performance.md).
sys.modules.setdefault("rfc3987_syntax", None)
