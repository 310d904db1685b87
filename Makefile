# empire: two commands on a fresh machine.
#   make demo   the main job on the embedded default (no cluster, no Prometheus)
#   make test   lint + the whole test suite, with throwaway PostgreSQL/Redis/Prometheus/Alertmanager
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO_DIR ?= out/demo

.PHONY: demo test lint format bench crd lock clean help

help:
	@echo "make demo   run the main job on the embedded default (creates $(VENV))"
	@echo "make test   install test deps, start services on 127.0.0.1, lint, run pytest, stop services"
	@echo "make lint   ruff check + format check + import layers (lint-imports, .importlinter)"
	@echo "make bench  run every benchmark (one JSON line each)"
	@echo "make crd    regenerate deploy/crds/empireconfigs.yaml and deploy/empireconfig.yaml after a policy schema change"
	@echo "make lock   regenerate deploy/image/requirements.lock (the image's hashed dependencies) from pyproject.toml"

# Debian/Ubuntu ship venv without ensurepip: `python3 -m venv` fails there (leaving a half-made
# venv whose bin/python would make the next `make` skip this step) until python3-venv is installed.
$(BIN)/python:
	@$(PYTHON) -m venv $(VENV) || { rm -f $(BIN)/python; \
	  echo "make: '$(PYTHON) -m venv' failed: install python3-venv (Debian/Ubuntu: apt-get install python3-venv)" >&2; \
	  exit 1; }
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@ $(VENV)/.installed-run

demo: $(VENV)/.installed-run
	@mkdir -p $(DEMO_DIR)
	EMPIRE_DATA_DIR=$(DEMO_DIR)/data $(BIN)/empire policy validate src/empire/policies/defaults/policy.yaml
	EMPIRE_DATA_DIR=$(DEMO_DIR)/data $(BIN)/empire db upgrade
	@# 62 days of NASA-HTTP traffic, minute by minute, through the real loop: reactive (HPA) vs empire vs oracle
	$(BIN)/empire backtest --json $(DEMO_DIR)/backtest.json --plot $(DEMO_DIR)/backtest.png

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

test: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	scripts/with-services.sh $(BIN)/pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed-dev
	@for b in benchmarks/*.py; do case $$b in */_*|*/nab_score.py) continue;; esac; \
	  echo "== $$b" >&2; scripts/with-services.sh $(BIN)/python $$b || exit 1; done

crd: $(VENV)/.installed-run
	$(BIN)/empire operator crd > deploy/crds/empireconfigs.yaml
	$(BIN)/empire operator example > deploy/empireconfig.yaml

# The image's dependencies, pinned with hashes (Dockerfile installs them with --require-hashes).
lock: $(VENV)/.installed-run
	$(BIN)/pip install -q pip-tools
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
	  --extra postgres --extra redis --extra operator --output-file deploy/image/requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
