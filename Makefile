# Two set-up commands: `make demo` (the main job) and `make test` (the whole test suite). Both create .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
OUT ?= results

.PHONY: demo test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench,ray,torch]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/stalegrad reproduce all --out $(OUT)

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src

test: lint
	$(BIN)/python -m pytest src tests --durations=15

bench: $(VENV)/.installed
	$(BIN)/python bench/bench_sim.py
	$(BIN)/python bench/bench_engines.py
	$(BIN)/python bench/bench_replay.py
	$(BIN)/python bench/bench_runtime.py
	$(BIN)/python bench/bench_datapath.py
	$(BIN)/python bench/bench_startup.py
	$(BIN)/python bench/bench_validate.py
	$(BIN)/python bench/bench_pmf.py
	$(BIN)/python bench/bench_torch.py
	$(BIN)/python bench/bench_advise.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .mypy_cache .ruff_cache
