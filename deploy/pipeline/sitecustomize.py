"""Runs at the start of every Python process in the pipeline image (PYTHONPATH puts it first).

1. Imports the project's `modules` package before anything loads TensorFlow: it sets the
   process environment the user modules need (the Keras-2 switch, in modules/__init__.py, its
   one place), and the KFP entrypoint imports TensorFlow before it loads the module files.
2. Registers tensorflow-io's s3:// filesystem in every pipeline step when S3 is configured: TFX
   executors open artifact URIs through tf.io.gfile, which knows s3:// only after
   `import tensorflow_io`; nothing in TFX imports it, and importing it unconditionally would
   slow every step, so only pods given an S3 endpoint or region (MinIO, AWS) pay for it.
"""

import os

import modules  # noqa: F401

if os.environ.get("S3_ENDPOINT") or os.environ.get("AWS_REGION"):
    try:
        import tensorflow_io  # noqa: F401
    except ImportError:  # an image built without it: gs:// and local paths still work
        pass
