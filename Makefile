# Two commands for a newcomer: `make demo` and `make test`. Both create .venv and install
# into it; nothing has to be installed by hand first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
DEMO_SAMPLES ?= 1200

.PHONY: install demo test lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch goes first, with pip: here it is a CPU build on local disk, and letting the resolver
# pick a torch for transformers/diffusers would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[all,dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	rm -rf out/demo
	$(BIN)/mcie build --out out/demo --samples $(DEMO_SAMPLES) --seed 0 --workers 2 --shard-size 200
	$(BIN)/mcie audit out/demo
	$(BIN)/mcie preview out/demo

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

clean:
	rm -rf out .pytest_cache
