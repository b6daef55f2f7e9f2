"""Why the model said what it said, for one prediction: sampled Shapley values (explain/shapley.py).

Needs nothing from the model but a predict callable over raw rows, so it works for every model
family and through any model server; the web app's Predict page passes one that sends a single
batched request to the running server."""
