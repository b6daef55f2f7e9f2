"""Package metadata for the end-to-end TFX taxi pipeline.

The TFX 1.16 family is pinned in constraints.txt; install with
`pip install --ignore-requires-python -c constraints.txt -e '.[dev]'` (what `make install` runs).
"""

from setuptools import find_packages, setup

setup(
    name="tfx-taxi-mlops",
    version="0.1.0",
    description="End-to-end TFX pipeline: ingest, validate, transform, tune, train, evaluate, "
    "push, serve over TF Serving's APIs, and trace lineage in ML Metadata.",
    python_requires=">=3.11",
    packages=find_packages(
        include=[
            "metadata*",
            "pipeline*",
            "modules*",
            "runners*",
            "serving*",
            "lineage*",
            "registry*",
            "apps*",
            "mlops*",
            "monitoring*",
            "model_layout*",
            "model_card*",
            "data_stats*",
            "serving_api*",
            "cli_support*",
            "upkeep*",
        ]
    ),
    package_data={
        "modules": ["best_hyperparameters/*"],
        "apps.ui": ["views/*.py"],
        "model_card": ["template.md"],
        "pipeline.ingest": ["source_feature.pbtxt"],
    },
    install_requires=[
        "tfx==1.16.0",
        "keras-tuner==1.3.5",  # last release on tf.keras (Keras 2); 1.4 requires Keras 3
        "kfp==2.9.0",
        # gradient-boosted trees (modules/model.py); its C++ log is captured with wurlitzer
        "tensorflow-decision-forests==1.9.2",
        "wurlitzer",
        "tensorflow-serving-api==2.16.1",
        "grpcio",
        "click>=8",
        "prometheus-client",
        "aiohttp>=3.9",
        "uvloop",  # the model server's event loop (serving/event_loop.py, --event_loop)
        "orjson>=3.9",
        "requests",
        "markdown",  # model cards' HTML (model_card/)
        "streamlit==1.60.0",  # the web app (apps/ui, `mlops ui`)
        "psycopg2-binary",  # PostgreSQL data source (pipeline/ingest/postgres_source.py)
        "sqlparse",  # parses a PostgreSQL query source before it is sent (ingest/sql_query.py)
        "pyyaml>=6",  # dataset specs (modules/dataset_spec.py)
        # the linear baseline's L-BFGS fit (modules/baselines.py), drift tests (data_stats/);
        # TFX and TFMA require it too (pinned in constraints.txt: TFX wants <1.13)
        "scipy",
    ],
    extras_require={
        "dev": [
            "pytest>=8",
            "pytest-timeout",
            # `make test-fast` runs on two workers (`-n 2 --dist loadgroup`, tests/conftest.py).
            "pytest-xdist",
            "ruff",
            # Offline schema checks of the deploy/ manifests (tests/deploy/test_manifests.py).
            "kubernetes-validate>=1.30",
            "compose-spec>=0.2.1",
            # Fuzz tests of the model server's REST/gRPC inputs (tests/serving/test_fuzz.py).
            "hypothesis>=6.100",
            # A throwaway certificate for the gRPC TLS test (tests/serving/test_hardening.py).
            "cryptography",
        ]
    },
    entry_points={"console_scripts": ["mlops=mlops.cli:main"]},
)
