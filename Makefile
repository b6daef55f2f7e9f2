# One pinned resolve into .venv; every target installs first when needed.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: install run run-fast test lint serve bench clean

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

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(ARGS)

lint: install
	$(BIN)/ruff check .

serve: install
	$(BIN)/mlops serve --model_name=taxi --model_base_path=$(CURDIR)/serving_model/taxi $(ARGS)

bench: install
	$(BIN)/python bench/serving_bench.py $(ARGS)

clean:
	rm -rf tfx_pipeline_output tfx_metadata serving_model/*/
