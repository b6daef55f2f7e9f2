"""Thin runners: each builds a PipelineConfig and hands create_pipeline to an orchestrator."""
