# make run  : set up .venv, start Airflow on 127.0.0.1:8080, train the bundled pipeline, report.
#   make run FRESHCAST_DATABASE_URL=postgresql+psycopg2://postgres@127.0.0.1:5432/freshcast
#   keeps Airflow's metadata in PostgreSQL instead of SQLite (the database is created if missing).
# make stop : stop every process make run started, task processes included; returns when gone.
# make test : install the development requirements and run the whole test suite.
# make registry PIPELINE=x : the pipeline's model versions, champion, problems and decisions.
# make registry-check PIPELINE=x : verify every bundle, the pointer and the history; repair.
# make rollback PIPELINE=x VERSION=n : serve version n again (runs the rollback_x DAG).
# make replay PIPELINE=x START=YYYY-MM-DD END=YYYY-MM-DD : backfill retraining over that stretch.
# make env   : .env with fresh secrets for `docker compose up` (CeleryExecutor, see docs/deployment.md).
# make bench : the benchmark suite (bench/): a table of figures and goals, bench/results.json.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
PIPELINE ?= seattle_weather
CONF ?=
# Slots of the Airflow pool that every train task runs in (models trained at once).
export TRAINING_POOL_SLOTS ?= 2
# Keep TensorFlow's C++ start-up chatter out of the task logs.
export TF_CPP_MIN_LOG_LEVEL ?= 2
# The metadata database's SQLAlchemy URL; empty: SQLite in AIRFLOW_HOME.
export FRESHCAST_DATABASE_URL ?=

VERSION ?=
REASON ?= manual rollback
START ?=
END ?=
# e.g. BENCH_ARGS='--cases windowing,parse --repeats 5'
BENCH_ARGS ?=

.PHONY: run stop status registry registry-check rollback replay env test bench lint format install install-dev clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version' \
		|| { echo "Set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python requirements.txt pyproject.toml
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt requirements-distributed.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	@touch $@

# PostgreSQL's drivers for the metadata database (psycopg2, and asyncpg for Airflow's async
# engine), at their pins in requirements-distributed.txt.
$(VENV)/.installed-postgres: $(VENV)/.installed requirements-distributed.txt
	$(BIN)/pip install --quiet $$(grep -E '^(psycopg2-binary|asyncpg)==' requirements-distributed.txt)
	@touch $@

install: $(VENV)/.installed $(if $(filter postgres%,$(FRESHCAST_DATABASE_URL)),$(VENV)/.installed-postgres)
install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/python -m freshcast.local run --pipeline $(PIPELINE) --conf '$(CONF)'

stop:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m freshcast.local stop; else echo "nothing to stop"; fi

status: install
	$(BIN)/python -m freshcast.local status

registry: install
	$(BIN)/python -m freshcast.registry show $(PIPELINE)

registry-check: install
	$(BIN)/python -m freshcast.registry check $(PIPELINE)

rollback: install
	@test -n "$(VERSION)" || { echo "usage: make rollback PIPELINE=name VERSION=n [REASON=...]"; exit 2; }
	$(BIN)/python -m freshcast.local rollback --pipeline $(PIPELINE) --version $(VERSION) --reason '$(REASON)'

replay: install
	$(BIN)/python -m freshcast.local replay --pipeline $(PIPELINE) --start '$(START)' --end '$(END)'

# .env for docker-compose.yaml with fresh random secrets; an existing .env is kept.
env:
	$(PYTHON) include/freshcast/deploy.py .env

test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# statsforecast for the accuracy case's AutoETS and AutoARIMA peers, on top of the dev pins.
$(VENV)/.installed-bench: $(VENV)/.installed-dev requirements-bench.txt
	$(BIN)/pip install --quiet -r requirements-bench.txt
	@touch $@

bench: $(VENV)/.installed-bench
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean: stop
	rm -rf $(VENV) .airflow artifacts .freshcast-cache .pytest_cache .ruff_cache
