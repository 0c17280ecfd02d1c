# aselect-bench: every target creates the virtual environment itself when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PRESET ?= demo
TASK ?= fgvc
DATASET ?= cub
DATASETS ?=
DATA_ROOT ?=
LAUNCHER ?=
JOBS ?=
ARGS ?=

.PHONY: setup test test-gpu lint bench-fgvc bench-ade20k compare-exhaustive ladder bench-perf bench-components bench-pretrain estimate results-estimate results-demo results tensorboard tensorboard-all clean

setup: $(STAMP)

# pip takes torch/torchvision from this machine's disk when they lie there; constraints pin the tested set.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,parity,docs]'
	touch $(STAMP)

# One pytest-xdist worker per core (tests/conftest.py gives each its share of the threads); whole files go to one
# worker, so a module's shared fixtures are built once. TEST_ARGS="-n 0" runs them in this process.
TEST_ARGS ?= -n auto --dist loadfile
test: $(STAMP)
	$(BIN)/python -m pytest -q $(TEST_ARGS)

# The CUDA tests only (tests/test_gpu.py; they skip where there is no CUDA device).
test-gpu: $(STAMP)
	$(BIN)/python -m pytest -q -m gpu

lint: $(STAMP)
	$(BIN)/ruff check aselect_bench benchmarks tests

bench-fgvc: $(STAMP)
	$(BIN)/python benchmarks/bench_fgvc.py --preset $(PRESET) $(if $(DATASETS),--datasets $(DATASETS)) $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) $(ARGS)

bench-ade20k: $(STAMP)
	$(BIN)/python benchmarks/bench_ade20k.py --preset $(PRESET) $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) $(ARGS)

compare-exhaustive: $(STAMP)
	$(BIN)/aselect-bench compare --task $(TASK) --dataset $(DATASET) --preset $(PRESET) $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) $(if $(LAUNCHER),--launcher $(LAUNCHER)) $(if $(JOBS),--jobs $(JOBS)) $(ARGS)

# The known-answer ladder (docs/ladder.md): one comparison per corruption level, each level's pieces jobs of one
# sweep. The committed one (results/ladder/): make ladder LAUNCHER=local JOBS=2 (its time: docs/results.md)
LADDER_PRESET ?= ladder
KIND ?= gauss
LEVELS ?= 0,0.05,0.1,0.2,0.3
ladder: $(STAMP)
	$(BIN)/aselect-bench ladder --task $(TASK) --dataset $(DATASET) --preset $(LADDER_PRESET) --kind $(KIND) --levels $(LEVELS) $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) $(if $(LAUNCHER),--launcher $(LAUNCHER)) $(if $(JOBS),--jobs $(JOBS)) $(ARGS)

bench-perf: $(STAMP)
	$(BIN)/python benchmarks/perf/perf_extract.py $(ARGS)
	$(BIN)/python benchmarks/perf/perf_probe.py $(ARGS)
	$(BIN)/python benchmarks/perf/perf_selectors.py
	$(BIN)/python benchmarks/perf/perf_searches.py

bench-components: $(STAMP)
	$(BIN)/aselect-bench components --preset $(PRESET) --dataset $(DATASET) $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) $(ARGS)

# The demo DiT: the cub comparison at each kept pretraining checkpoint (resumes `make compare-exhaustive` for
# the shipped end model), then pretrained-vs-random probes (results/demo/pretrain.md holds both).
bench-pretrain: $(STAMP)
	$(BIN)/python benchmarks/studies/pretrain_checkpoints.py
	$(BIN)/python benchmarks/studies/pretrain_demo.py

# A dry run of a preset's recipe at real size on this machine (TASK defaults to all here): memory, seconds per step,
# projected hours of A-SelecT and of the exhaustive sweep (results/estimate/<preset>-<task>-<device>.{json,md}).
estimate: $(STAMP)
	$(BIN)/aselect-bench estimate --preset $(PRESET) --task $(if $(filter command line,$(origin TASK)),$(TASK),all) --dataset $(DATASET) $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) $(ARGS)

# The committed real-size estimates: SD3-medium (paper) and DiT-XL/2 (paper-dit), each under 15 min on a quiet 2-core CPU.
results-estimate: $(STAMP)
	$(MAKE) estimate PRESET=paper ARGS="--gpus 8 --gpu h100"
	$(MAKE) estimate PRESET=paper-dit ARGS="--gpus 8 --gpu h100"
	$(MAKE) estimate PRESET=paper ARGS="--flops-only --gpus 64 --gpu h100"

# Every committed result of the demo, re-run with the current code, in an order where each step can reuse the
# last one's pieces: the six FGVC comparisons, then cub again with 3 seeds and the fused baseline (seed 0 is
# reused), ADE20K with 3 seeds, the component maps, the pretraining studies (they need the pretraining's
# checkpoints: 'aselect-bench pretrain --out /tmp/demo-dit --force' rebuilds them), and the speed measurements.
# About 4 hours on a 2-core CPU (docs/results.md has each step's time). The comparisons also write the
# selectors' leaderboard (results/compare/selectors.*).
results-demo: $(STAMP)
	$(MAKE) bench-fgvc
	$(MAKE) bench-ade20k
	$(MAKE) compare-exhaustive DATASET=all
	$(MAKE) compare-exhaustive ARGS="--fused --seeds 3"
	$(MAKE) compare-exhaustive TASK=ade20k ARGS="--max-epochs 3 --seeds 3"
	$(MAKE) ladder LAUNCHER=local JOBS=2
	$(MAKE) bench-components
	$(MAKE) bench-components ARGS="--timestep 50"
	$(MAKE) bench-pretrain
	$(BIN)/python benchmarks/studies/linear_norm.py
	$(MAKE) bench-perf
	$(BIN)/python benchmarks/perf/perf_extract.py --flops-only
	$(BIN)/python benchmarks/perf/perf_backbone.py
	$(BIN)/python benchmarks/perf/perf_loading.py

# Everything under results/: the demo's results and the real-size estimates.
results: results-demo results-estimate

# The reference in docs/ (mkdocs.yml): serve it while editing, or build it strictly (a broken link fails) into site/.
.PHONY: docs docs-build
docs: $(STAMP)
	$(BIN)/python -m mkdocs serve

docs-build: $(STAMP)
	$(BIN)/python -m mkdocs build --strict --site-dir site

# The reports (comparisons, leaderboard, components): a handful of runs whatever a sweep's size, all selected.
tensorboard: $(STAMP)
	$(BIN)/tensorboard --logdir runs/reports

# Every run under runs/, trainings included (above 40 runs TensorBoard selects none: filter the runs by a regex).
tensorboard-all: $(STAMP)
	$(BIN)/tensorboard --logdir runs

clean:
	rm -rf runs lightning_logs .pytest_cache
