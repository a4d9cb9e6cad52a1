# mll: `make demo` runs the pipeline end to end (writing reports/); `make test` runs the test suite;
# `make results` is the only target that rewrites the README's result block.
# Both install what they need first (Debian packages, .venv with pinned deps); a second run is fast.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# quiet, offline runs of the MLOps stack: the variables are stated once, in src/mll/offline.env
include src/mll/offline.env
export $(shell sed -n 's/^\([A-Z_]*\)=.*/\1/p' src/mll/offline.env)
export PREFECT_HOME := $(CURDIR)/.prefect
export MLFLOW_TRACKING_URI := sqlite:///$(CURDIR)/mlflow.db
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help setup system demo results final-test test lint format test-fast bench serve stop relabel dvc-deps clipart clean

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

setup: system $(STAMP)  ## install Debian packages and the .venv (idempotent)

system:
	@bash scripts/setup_system.sh

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e ".[pipeline,dev]"
	@touch $@

demo: setup clipart  ## run the whole pipeline (dvc repro) on the embedded demo, benchmark and report included; writes reports/, not README.md
	@start=$$(date +%s); bash scripts/with_prefect.sh dvc repro && \
	echo "done in $$(( $$(date +%s) - start )) s: reports/benchmark.md holds the results (\`make results\` copies them into README.md);" \
	     "browse runs with: mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1"

# the one place the README's result block is rewritten: explicitly, from the recorded benchmark cells
REPORT := $(BIN)/python -m mll.bench.report --cells reports/benchmark/cells.json --test-cells reports/final_test/cells.json --studies reports/benchmark/studies.json --out reports

results: setup  ## rewrite the README's result block (and reports/benchmark.*) from the recorded benchmark and final-test cells
	$(REPORT) --readme README.md

final-test: setup  ## the frozen final evaluation (once per release): run DVC stage final-test, then `make results`
	bash scripts/with_prefect.sh $(BIN)/python flows/evaluate.py --split test --out reports/final_test/cells.json && \
	dvc commit -f final-test && \
	$(MAKE) --no-print-directory results && \
	dvc commit -f report

test: setup  ## run the test suite
	$(BIN)/python -m pytest

lint: setup  ## ruff: lint and format check (what CI runs before the tests)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup  ## ruff: fix what can be fixed and format the code
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test-fast: setup  ## the test suite without slow tests
	$(BIN)/python -m pytest -m "not slow"

bench: setup  ## print the benchmark figures
	$(BIN)/python -m benchmarks

serve: setup  ## start Prefect (server, worker, deployments) and the MLflow UI on 127.0.0.1
	bash scripts/serve.sh start

stop:  ## stop everything `make serve` started
	bash scripts/serve.sh stop

relabel: setup  ## run the label-hub deployment on the served Prefect (after `make serve`; it records its outputs in DVC)
	prefect deployment run 'label-hub/label-hub' --watch  # the served API: ./prefect.toml -> profile mll-served

dvc-deps: setup  ## rewrite dvc.yaml's code deps from each stage's import closure
	$(BIN)/python scripts/dvc_deps.py --write

clipart:  ## fetch the emoji artwork (npm emoji-datasource-google/-twitter) into .cache/emoji; skips what is there
	bash scripts/fetch_emoji.sh

clean:  ## remove caches (not the venv, not DVC outputs)
	rm -rf .cache .pytest_cache
