"""Operate served model versions: list, label (promote/rollback), retire, audit trail, model cards.

The served state lives where TF Serving reads it: version directories under the model base path
and `version_labels` in the model config file. Every change is recorded in ML Metadata (through
registry/store.py only) so "who changed what the service serves, when and why" has one answer.
"""
