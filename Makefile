# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_ARGS ?=
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: demo test test-future install install-test servers image-tools image lint typecheck bench clean govuk-frontend lock audit

# Every dependency comes from a lock file in requirements/ with its sha256 (pip refuses anything
# else), with --no-deps since a lock is complete (requirements/excludes.txt: what it leaves out on
# purpose), then the hub itself with --no-deps; the stamps re-run when a lock file changes.
# `make lock` regenerates the lock files (docs/deploy.md "Supply chain").
$(BIN)/hub: pyproject.toml setup.py requirements/pip.txt requirements/runtime.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r requirements/pip.txt
	$(BIN)/pip install -q --no-deps --require-hashes -r requirements/runtime.txt
	$(BIN)/pip install -q --no-deps -e .
	@touch $@

install: $(BIN)/hub

$(VENV)/.test-deps: $(BIN)/hub requirements/test.txt
	$(BIN)/pip install -q --no-deps --require-hashes -r requirements/test.txt
	@touch $@

install-test: $(VENV)/.test-deps

# Debian's rabbitmq-server and PostgreSQL, installed only when missing (needs root or sudo).
servers:
	bash scripts/install-servers.sh

# podman, runc and mmdebstrap, for `make image` and the container test (needs root or sudo when
# missing; outside CI a machine that cannot install them skips the container test)
image-tools:
	bash scripts/install-image-tools.sh

# the one image for every role, tagged council-hub:dev (deploy/Containerfile, docs/deploy.md)
image: image-tools
	bash scripts/build-image.sh

demo: install
	$(BIN)/hub demo $(DEMO_ARGS)

# lint and type checks first: they take seconds, the suite takes minutes. Without PYTEST_ARGS,
# tests/unit (no servers, free ports, temp dirs) run first on two processes (pytest-xdist, one
# file per process at a time), then the rest one at a time: the fault tests time real processes
# and must not share the cores. `make test PYTEST_ARGS=tests/unit/test_x.py` runs just that.
TEST_WORKERS ?= 2
test: install-test servers image-tools lint typecheck
ifeq ($(strip $(PYTEST_ARGS)),)
	@# both phases run even when the first fails, so one red run reports every failure
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile tests/unit; unit=$$?; \
	$(BIN)/python -m pytest --ignore=tests/unit; rest=$$?; \
	[ $$unit -eq 0 ] && [ $$rest -eq 0 ]
else
	$(BIN)/python -m pytest $(PYTEST_ARGS)
endif

# the unit tests with the clock a year ahead: nothing in them may expire as the calendar moves
test-future: install-test
	TEST_CLOCK_AHEAD_DAYS=365 $(BIN)/python -m pytest -m unit $(PYTEST_ARGS)

lint: install-test
	$(BIN)/ruff check .

# The benchmark of issue 6 (bench/README.md): the hub vs a Celery peer vs the broker's ceiling.
# `make bench BENCH_ARGS=--quick` is a smoke run of a few minutes; results in bench/results/.
bench: install servers
	$(BIN)/pip install -q --no-deps --require-hashes -r requirements/bench.txt
	$(BIN)/python -m bench.run $(BENCH_ARGS)

typecheck: install-test
	$(BIN)/mypy

# the console's GOV.UK Frontend (hub/console/static/govuk/) refreshed from npm, PROVENANCE rewritten
govuk-frontend:
	bash scripts/govuk-frontend.sh

# the supply chain's own tools (uv, pip-audit, cyclonedx-bom) in a venv of their own, from their lock
TOOLS := $(VENV)/tools
$(TOOLS)/.stamp: requirements/pip.txt requirements/tools.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --require-hashes -r requirements/pip.txt
	$(TOOLS)/bin/pip install -q --require-hashes -r requirements/tools.txt
	@touch $@

# requirements/*.txt from pyproject.toml and requirements/*.in; LOCK_ARGS="--upgrade-package X" moves one
lock: $(TOOLS)/.stamp
	UV=$(TOOLS)/bin/uv bash scripts/lock.sh

# pip-audit of the runtime lock; prints "skipped: <reason>" and passes where no vulnerability
# database answers (scripts/audit.py), fails on any finding otherwise
audit: $(TOOLS)/.stamp
	$(TOOLS)/bin/python scripts/audit.py requirements/runtime.txt

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache build
