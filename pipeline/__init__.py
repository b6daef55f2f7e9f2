"""The pipeline: config, create_pipeline, its custom components, the local run and report.

`modules` is imported first: it sets the Keras-2 switch before anything here loads TensorFlow.
"""

import modules  # noqa: F401
