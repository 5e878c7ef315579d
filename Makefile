# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
# The stamp depends on every file that decides what is installed: a second `make setup` is a no-op.
STAMP := $(VENV)/.installed
INSTALL_INPUTS := $(wildcard requirements/*.txt) pyproject.toml

.PHONY: setup demo test test-fast lint bench results pipeline manifests images clean

setup: $(STAMP)

# The three-step install order of STACK.md: torch (CPU) first, then the rest, then torchrec with --no-deps.
$(STAMP): $(INSTALL_INPUTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements/torch.txt
	$(PIP) install -r requirements/base.txt -r requirements/fbgemm-cpu.txt -r requirements/dev.txt
	$(PIP) install --no-deps -r requirements/torchrec.txt
	$(PIP) install --no-deps -e .
	$(BIN)/python -c "import torch, fbgemm_gpu, torchrec, kfp, wukong; print('setup ok: torch', torch.__version__)"
	touch $@

# The main job: the whole Kubeflow pipeline on this machine (kfp.local): MovieLens (or synthetic data when
# the shared copy is absent) -> shards -> 2-process TorchRec training -> evaluation -> registry with a gate.
MOVIELENS ?= ../shared/data/ml-latest-small
DEMO ?= runs/demo
DEMO_SOURCE := $(if $(wildcard $(MOVIELENS)/ratings.csv),--source movielens --input $(MOVIELENS) --preset movielens,--source synthetic --rows 200000 --preset tiny)
DEMO_ARGS ?=
demo: setup
	$(BIN)/wukong pipeline run --local --workdir $(DEMO) $(DEMO_SOURCE) --min-auc 0.6 $(DEMO_ARGS)

# On TEST_WORKERS pytest-xdist workers (0: one process), a test file at a time (--dist loadfile in pyproject.toml:
# a module-scoped fixture, such as a trained model, is built once; loadgroup's xdist_group marks are ignored
# under pytest 9.2, pytest-xdist#1386). The slowest tests are listed at the end.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --durations=15
test: setup
	$(PYTEST)

# The quick loop: everything but the tests marked slow (the ones that train, or otherwise take seconds).
test-fast: setup
	$(PYTEST) -m "not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/python benchmarks/model_throughput.py
	$(BIN)/python benchmarks/data_throughput.py
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/profile_step.py --compile both

pipeline: setup
	$(BIN)/wukong pipeline compile
	$(BIN)/python -m pipelines.wukong_scaling_pipeline
	$(BIN)/python -m pipelines.wukong_ingest_pipeline
	$(BIN)/python -m pipelines.wukong_tuning_pipeline

manifests: setup
	$(BIN)/python -m wukong.launch.examples

# Container images, with docker or podman when one is present (neither runs on every machine).
CONTAINER_TOOL := $(shell command -v docker 2>/dev/null || command -v podman 2>/dev/null)
images:
	@if [ -z "$(CONTAINER_TOOL)" ] || ! $(CONTAINER_TOOL) info >/dev/null 2>&1; then \
		echo "make images: no working docker or podman here; nothing built (hadolint checks run in make test)"; \
	else \
		$(CONTAINER_TOOL) build -f images/Dockerfile.cpu -t wukong:0.1.0-cpu . && \
		$(CONTAINER_TOOL) build -f images/Dockerfile.cuda -t wukong:0.1.0-cuda . ; \
	fi

results: setup
	$(BIN)/python benchmarks/results.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
