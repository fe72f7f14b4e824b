# The two commands a newcomer needs: `make dev` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev generate test test-fast test-compat lint bench clean kind-up kind-smoke kind-openfaas kind-down

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the project metadata changes.
$(STAMP): pyproject.toml local/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e ./local
	touch $(STAMP)

dev: $(STAMP)
	$(BIN)/nextup dev $(ARGS)

# Everything that follows from the function declarations (nextup.functions): the Triggers,
# PingSources, Knative Services, stack.yml, the entry points, docs/EVENTS.md
# (nextup_dev.render says which). tests/deploy/test_generated.py fails until it is run.
generate: $(STAMP)
	$(BIN)/python -m nextup_dev.generate

# Every test, in a time zone that is not UTC (a half-hour-and-a-quarter offset with DST):
# nothing may depend on the zone of the machine that runs it. Then the tests of what
# differs across Pythons (e-mail headers, Unicode, time zones) on 3.12 and 3.13 too.
test: $(STAMP)
	$(BIN)/ruff check functions local tests bench
	$(BIN)/ruff format --check functions local tests bench
	TZ=Pacific/Chatham $(BIN)/pytest -n 2 --dist loadfile
	$(MAKE) test-compat

# The fast loop, under a minute on 2 cores: the tests marked `fast`, whose functions run
# in the test's process (tests/inprocess.py) against real peers. `make test` runs them too,
# with the process fleets (crashes, storms, cold starts, real sockets) and everything else.
test-fast: $(STAMP)
	TZ=Pacific/Chatham $(BIN)/pytest -n 2 --dist loadfile -m fast

# The Pythons requires-python allows besides the one .venv has, as pyenv installs them.
# The tests' peers come from nextup_dev (local/), installed without `nextup dev`'s own
# dependencies: the peers need only aiosmtpd.
COMPAT_PYTHONS ?= $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3 $(HOME)/.pyenv/versions/3.13*/bin/python3)
COMPAT_TESTS := tests/test_targets.py tests/test_webhook_addresses.py tests/test_envelope.py \
	tests/test_events.py tests/test_recurrence_phrases.py tests/test_recurrence_zones.py \
	tests/test_recurrence_dst.py tests/test_recurrence_validation.py \
	tests/reliability/test_mail_injection.py

test-compat:
	@test -n "$(COMPAT_PYTHONS)" || { echo "no Python 3.12 or 3.13 found (COMPAT_PYTHONS)"; exit 1; }
	@for python in $(COMPAT_PYTHONS); do \
		version=$$($$python -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
		venv=.venv-$$version; \
		test -x $$venv/bin/python || $$python -m venv $$venv || exit 1; \
		$$venv/bin/python -m pip install --quiet -e . pytest pytest-timeout hypothesis \
			aiosmtpd || exit 1; \
		$$venv/bin/python -m pip install --quiet --no-deps -e ./local || exit 1; \
		echo "Python $$version:"; \
		TZ=America/St_Johns $$venv/bin/python -m pytest -q -p no:cacheprovider \
			$(COMPAT_TESTS) || exit 1; \
	done

lint: $(STAMP)
	$(BIN)/ruff check functions local tests bench
	$(BIN)/ruff format --check functions local tests bench

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .venv-3.* .nextup .pytest_cache .ruff_cache .hypothesis

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
