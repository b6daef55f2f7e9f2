"""Keep AutoGraph out of Keras 2's own code, as TensorFlow already does for `keras`.

Every `tf.function` Keras builds (the train and test steps of each Tuner trial and of the
Trainer, the export's signatures) is traced through AutoGraph, which rewrites and re-runs as
converted Python every function it reaches unless a rule says not to. TensorFlow's rules skip
the `keras` package, written to be traced without conversion, but not `tf_keras`, the same
Keras 2 code under the name TFX 1.16 needs (modules/__init__.py). So every trace converted all of
Keras's training loop, layers and metrics: on the default data, tracing was most of each Tuner
trial (four trials x 300 steps: 139 s with conversion, 43 s without, same best configuration;
docs/performance.md). keras_tuner is skipped for the same reason. User code (the model, the
preprocessing_fn) is still converted.
"""

from __future__ import annotations

from absl import logging

# Packages whose functions AutoGraph calls as they are instead of converting them.
UNCONVERTED_PACKAGES: tuple[str, ...] = ("tf_keras", "keras_tuner")


def skip_library_internals(packages: tuple[str, ...] = UNCONVERTED_PACKAGES) -> bool:
    """Add a do-not-convert rule for each package (once). False when this TensorFlow has no
    such rules table (the rules are internal API): tracing is then only slower."""
    try:
        from tensorflow.python.autograph.core import config
    except ImportError:  # pragma: no cover - a TensorFlow without AutoGraph's rules module
        logging.warning("AutoGraph rules not found: Keras internals will be converted")
        return False
    skipped = [r for r in config.CONVERSION_RULES if isinstance(r, config.DoNotConvert)]
    missing = tuple(
        config.DoNotConvert(p) for p in packages if not any(r.matches(p) for r in skipped)
    )
    if missing:
        config.CONVERSION_RULES = missing + tuple(config.CONVERSION_RULES)
    return True
