# One pinned resolve into .venv; every target installs first when needed.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: install run run-fast test test-fast lint serve ui bench bench-pipeline clean

$(STAMP): setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip 'setuptools<80' wheel
	$(BIN)/pip install --ignore-requires-python -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python runners/local_runner.py $(ARGS)

run-fast: install
	$(BIN)/python runners/local_runner.py --skip-tuning $(ARGS)

# The whole suite on two pytest-xdist workers (tests/conftest.py groups each module, and every
# user of the shared small pipeline, onto one worker, so each fixture runs once).
test: lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(ARGS)

# Everything but the tests marked slow (those that run the pipeline): a few minutes, on two
# pytest-xdist workers (each test module stays on one worker: tests/conftest.py's xdist groups).
test-fast: lint
	$(BIN)/python -m pytest -m "not slow" -n 2 --dist loadgroup $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

serve: install
	$(BIN)/mlops serve --model_name=taxi --model_base_path=$(CURDIR)/serving_model/taxi $(ARGS)

# The web app on http://127.0.0.1:8502 (docs/ui.md); starts `mlops serve` when none answers.
ui: install
	$(BIN)/mlops ui $(ARGS)

bench: install
	command -v wrk >/dev/null && command -v h2load >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk nghttp2-client)
	$(BIN)/python bench/serving_bench.py $(ARGS)

bench-pipeline: install
	$(BIN)/python bench/pipeline_bench.py $(ARGS)

clean:
	rm -rf tfx_pipeline_output serving_model/*/

# Pipeline image for Kubeflow (deploy/pipeline/Dockerfile) and the compiled spec.
# `make image` needs a Docker engine and a registry login; it is not run in CI.
IMAGE ?= localhost:5000/tfx-taxi-pipeline:0.1.0
KFP_SPEC ?= tfx_pipeline_output/kubeflow/taxi-pipeline.yaml

.PHONY: image kubeflow
image:
	docker build -f deploy/pipeline/Dockerfile -t $(IMAGE) .
	docker push $(IMAGE)

kubeflow: install
	$(BIN)/python runners/kubeflow_runner.py --image $(IMAGE) --output $(KFP_SPEC) $(ARGS)

# Continuous training (docs/continuous_training.md): add a validated span, retrain on the latest
# span (push only a better model), check serving skew of logged requests.
#   cron: 0 3 * * * cd /srv/tfx-taxi-mlops && make retrain >> logs/retrain.log 2>&1
# `make retrain` is also what the LiveFeatureSkewHigh webhook calls (docs/monitoring.md);
# `make -n retrain` shows the command (tests/monitoring/test_skew_monitor.py checks it).
CSV ?=
REQUESTS ?= request_log
.PHONY: add-span retrain check-skew
add-span: install
	$(BIN)/mlops data add-span $(CSV) $(ARGS)

# GC=1: after the run, `mlops gc --apply` with the dataset spec's retention (docs/upkeep.md),
# GC_ARGS overriding it (e.g. GC_ARGS="--keep-last 5"). A run stopped by the data gate stops
# make before the gc.
GC ?=
GC_ARGS ?=
retrain: install
	$(BIN)/python runners/local_runner.py $(ARGS)
	$(if $(GC),$(BIN)/mlops gc --apply $(GC_ARGS))

check-skew: install
	$(BIN)/mlops data check-skew --requests $(REQUESTS) $(ARGS)
