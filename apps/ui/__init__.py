"""The Streamlit web app (`mlops ui`): predict, runs, models, data and live serving.

Pages read ML Metadata only through apps.ui.data and talk to the model server only through
apps.ui.server (serving_api/client.py and the REST/gRPC protocol), so neither protocol nor store
details leak into page code.
"""
