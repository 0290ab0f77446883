# The README's two commands: `make demo` and `make test`. Each bootstraps .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every version installed anywhere (this venv, CI through `make test`, the Docker image) is the one
# pinned in the lock: pip and setuptools too. `make lock` regenerates it from pyproject's ranges.
LOCK := requirements.lock

.PHONY: demo test lint typecheck bench lock clean

# A changed lock re-installs. --constraint pins every package pip installs; --build-constraint pins
# setuptools in the isolated environment that builds the project. The first step brings the venv's
# own pip (whatever the Python shipped) to the locked pip, which knows --build-constraint.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --constraint $(LOCK) pip setuptools
	$(BIN)/python -m pip install --quiet --constraint $(LOCK) --build-constraint $(LOCK) -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/close-account-bot demo

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Resolve pyproject's ranges afresh (runtime dependencies, the test extra and the build backend)
# in a throwaway venv that never sees the old lock, then pin everything it installed, pip and
# setuptools included. Run it with the Python the image uses (3.11), then `make test`.
lock:
	set -eu; \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -c 'import tomllib; d = tomllib.load(open("pyproject.toml", "rb")); \
	p = d["project"]; print(*d["build-system"]["requires"], *p["dependencies"], \
	*p["optional-dependencies"]["test"], sep="\n")' > "$$tmp/requirements.in"; \
	"$$tmp/venv/bin/python" -m pip install --quiet --upgrade pip; \
	"$$tmp/venv/bin/python" -m pip install --quiet --upgrade -r "$$tmp/requirements.in"; \
	{ \
	echo "# Every package that make, CI (make test) and the Docker image install, at one version."; \
	echo "# Made by 'make lock' with $$("$$tmp/venv/bin/python" -V) on $$(uname -s) $$(uname -m):"; \
	echo "# a throwaway venv installs pip, then pyproject.toml's build-system requires, dependencies"; \
	echo "# and [test] extra from their ranges, and pip freeze --all pins what it got."; \
	echo "# Do not edit by hand. To update: change the ranges in pyproject.toml if needed, run"; \
	echo "# 'make lock', then 'make test' (the venv re-installs from the new lock) and commit both."; \
	"$$tmp/venv/bin/python" -m pip freeze --all; \
	} > "$(LOCK).tmp"; \
	mv "$(LOCK).tmp" "$(LOCK)"

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
