# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
# The stamp depends on every file that decides what is installed: a second `make setup` is a no-op.
STAMP := $(VENV)/.installed
INSTALL_INPUTS := requirements/torch.txt requirements/base.txt requirements/torchrec.txt requirements/dev.txt pyproject.toml

.PHONY: setup demo test lint bench results pipeline clean

setup: $(STAMP)

# The three-step install order of STACK.md: torch (CPU) first, then the rest, then torchrec with --no-deps.
$(STAMP): $(INSTALL_INPUTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements/torch.txt
	$(PIP) install -r requirements/base.txt -r requirements/dev.txt
	$(PIP) install --no-deps -r requirements/torchrec.txt
	$(PIP) install --no-deps -e .
	$(BIN)/python -c "import torch, fbgemm_gpu, torchrec, kfp, wukong; print('setup ok: torch', torch.__version__)"
	touch $@

# The main job, end to end on this machine: data -> 2-process TorchRec training -> evaluation.
MOVIELENS ?= ../shared/data/ml-latest-small
DEMO ?= runs/demo
demo: setup
	$(BIN)/wukong data prepare --source movielens $(if $(wildcard $(MOVIELENS)/ratings.csv),--input $(MOVIELENS),) \
		--output $(DEMO)/data --overwrite --quiet
	$(BIN)/wukong data inspect $(DEMO)/data
	$(BIN)/wukong models --config movielens --data $(DEMO)/data
	rm -rf $(DEMO)/model $(DEMO)/eval
	$(BIN)/wukong train --nproc 2 --data $(DEMO)/data --output $(DEMO)/model --config movielens --epochs 2
	$(BIN)/wukong evaluate --model $(DEMO)/model --data $(DEMO)/data --split test --output $(DEMO)/eval

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/python benchmarks/model_throughput.py
	$(BIN)/python benchmarks/data_throughput.py
	$(BIN)/python benchmarks/train_throughput.py

pipeline: setup
	$(BIN)/wukong pipeline compile

results: setup
	$(BIN)/python benchmarks/results_movielens.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
