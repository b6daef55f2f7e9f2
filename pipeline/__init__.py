"""The pipeline: config, create_pipeline, its custom components, the local run and report.

`modules` is imported first: it sets the Keras-2 switch before anything here loads TensorFlow.
"""

import modules  # noqa: F401


def __getattr__(name: str):
    """`pipeline.QuarantinedExamples`, imported on first use: Kubeflow V2 names a custom artifact
    type `<module>.<Class>` (one dot) and its container entrypoint imports the class by that
    name; loading it lazily keeps `import pipeline` free of TFX."""
    if name == "QuarantinedExamples":
        from pipeline.validation.row_cleaner import QuarantinedExamples

        return QuarantinedExamples
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
