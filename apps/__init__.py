"""User-facing applications built on the pipeline's stores and servers."""
