"""The test suite as a package: helpers are imported as `from tests.pipeline_samples import ...`."""
