"""The project's one console script, `mlops`: serve, predict, lineage, ...

`modules` sets the process environment (the Keras-2 switch) before any subcommand loads
TensorFlow.
"""

import modules  # noqa: F401
