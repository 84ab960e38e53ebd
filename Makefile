# Two commands for a newcomer: `make demo` and `make test`. Both create .venv and install
# into it; nothing has to be installed by hand first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
DEMO_SAMPLES ?= 1200
LS_VENV := .venv-ls
LABEL_STUDIO ?= label-studio==1.23.2

.PHONY: install install-ls demo test test-fast lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch goes first, with pip: here it is a CPU build on local disk, and letting the resolver
# pick a torch for transformers/diffusers would pull a multi-GB CUDA build.
# The editable install maps mcie.* onto the top-level folders (pipeline/, model/, ...), so
# setuptools installs a path finder and says so in an information-only notice ("folders named
# like the package may take precedence"): here the folder `mcie/` is the package, so the notice
# (and only it, by its text) is silenced; a real setuptools warning still shows.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install -q -e ".[all,dev]"
	touch $@

# Label Studio's server pins other versions than mcie (Django, pyarrow<25, its own sdk), so it
# lives in a venv of its own; `mcie ls serve` and the tests start it from $(LS_VENV)/bin.
$(LS_VENV)/.installed:
	$(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install -q --upgrade pip
	$(LS_VENV)/bin/pip install -q "$(LABEL_STUDIO)"
	touch $@

install: $(VENV)/.installed

# the tests start a real Label Studio server: only they need its venv, not `make demo`
install-ls: $(LS_VENV)/.installed

demo: install
	rm -rf out/demo
	$(BIN)/mcie build --out out/demo --samples $(DEMO_SAMPLES) --seed 0 --workers 2 --shard-size 200
	$(BIN)/mcie audit out/demo
	$(BIN)/mcie preview out/demo
	$(BIN)/mcie report out/demo

# every test; `make test-fast` is the edit-test loop: the tests with no tier marker (pyproject's
# markers, tests/conftest.py), no Label Studio, browser, object-store servers or torch models
FAST := not slow and not ls and not browser and not cloud and not model

# tests run in JOBS processes (pytest-xdist; one per core, at most 4): each server's tests and
# each module's tests stay on one worker (tests/conftest.py), so a server starts once per run
JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)
PYTEST := HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n $(JOBS) --dist loadgroup

test: install install-ls
	$(PYTEST)

test-fast: install
	$(PYTEST) -m "$(FAST)"

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

clean:
	rm -rf out .pytest_cache
