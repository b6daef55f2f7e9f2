"""The test suite as a package: helpers are imported as `from pipeline.testing.samples import
...`."""
