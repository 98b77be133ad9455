# Set-up and checks. `make test` installs into .venv/ when needed, then runs the suite.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# The CPU build of torch is installed first and pinned here only: pyproject declares a range.
TORCH_PIN ?= torch==2.13.0

.PHONY: install test test-slow check lint bench bench-quality bench-seeds demo drills arm64-check clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[train,dev]'
	touch $@

test: install
	$(PY) -m pytest -q

# checks marked slow (deselected by `make test`); `make bench` runs them too
test-slow: install
	$(PY) -m pytest -q -m slow

lint: install
	$(VENV)/bin/ruff check edge_aae export tests
	$(VENV)/bin/mypy edge_aae export
	$(VENV)/bin/mypy --strict edge_aae/core edge_aae/gateway

check: lint test

DATA ?= ../shared/data
bench-quality: install
	$(VENV)/bin/edge-aae bench quality --dataset skab --path $(DATA)/skab --update BENCHMARKS.md
	$(VENV)/bin/edge-aae bench quality --dataset skab --path $(DATA)/skab --relative-channels Temperature,Thermocouple --update BENCHMARKS.md
	$(VENV)/bin/edge-aae bench quality --dataset skab --path $(DATA)/skab --relative-channels Temperature,Thermocouple --score-stat shift --threshold t2 --update BENCHMARKS.md
	$(VENV)/bin/edge-aae bench quality --dataset smd --path $(DATA)/asd --interpretation-inclusive --update BENCHMARKS.md
	$(PY) -m export.bench.servers bench-out/data/servers
	$(VENV)/bin/edge-aae bench quality --dataset folder --path bench-out/data/servers --update BENCHMARKS.md
	$(PY) -m export.bench.plant bench-out/data/plant
	$(VENV)/bin/edge-aae bench quality --dataset folder --path bench-out/data/plant --seeds 0,1,2 --update BENCHMARKS.md
	$(PY) -m export.bench.plant bench-out/data/plant-slow --slow
	$(VENV)/bin/edge-aae bench quality --dataset folder --path bench-out/data/plant-slow --update BENCHMARKS.md

# the same with every headline figure's seed spread (three training runs of each data set)
bench-seeds: install
	$(VENV)/bin/edge-aae bench quality --dataset skab --path $(DATA)/skab --seeds 0,1,2 --update BENCHMARKS.md
	$(VENV)/bin/edge-aae bench quality --dataset smd --path $(DATA)/asd --interpretation-inclusive --seeds 0,1,2 --update BENCHMARKS.md

drills: install
	$(VENV)/bin/python -m export.bench.drills --update BENCHMARKS.md

# The gateway on ARM64 under qemu-user-static (root; builds and caches a Debian arm64 root filesystem)
arm64-check: install
	$(PY) -m export.bench.arm64 --update BENCHMARKS.md

demo: install
	$(VENV)/bin/edge-aae demo

bench: install test-slow
	$(VENV)/bin/edge-aae bench load --update BENCHMARKS.md
	$(VENV)/bin/edge-aae bench scale --update BENCHMARKS.md
	$(VENV)/bin/edge-aae bench train --out bench-out/train --update BENCHMARKS.md
	$(VENV)/bin/edge-aae bench speed --run bench-out/train/aae --update BENCHMARKS.md
	$(VENV)/bin/edge-aae export bench-out/train/aae --out bench-out/bundle --force
	$(VENV)/bin/edge-aae bench daemon --bundle bench-out/bundle --update BENCHMARKS.md
	$(VENV)/bin/edge-aae bench drift --bundle bench-out/bundle --update BENCHMARKS.md
	$(PY) -m export.bench.memory bench-out/bundle --update BENCHMARKS.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
