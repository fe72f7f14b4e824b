# The two commands a newcomer needs: `make dev` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test lint bench clean kind-up kind-smoke kind-openfaas kind-down

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the project metadata changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

dev: $(STAMP)
	$(BIN)/nextup dev $(ARGS)

test: $(STAMP)
	$(BIN)/ruff check functions tests bench
	$(BIN)/ruff format --check functions tests bench
	$(BIN)/pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check functions tests bench
	$(BIN)/ruff format --check functions tests bench

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .nextup .pytest_cache .ruff_cache .hypothesis

# A local kind cluster with Knative, Kafka and nextup (docs/DEPLOY.md). Need docker, kind,
# kubectl and curl; kind-openfaas also helm and faas-cli. Versions: infra/versions.env.
kind-up:
	bash infra/kind/up.sh

kind-smoke:
	bash infra/kind/smoke.sh

kind-openfaas:
	bash infra/kind/openfaas.sh

kind-down:
	bash infra/kind/down.sh
