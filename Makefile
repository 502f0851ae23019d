# The two commands: `make run` (demo models + the TUI with the demo pipeline) and
# `make test`. `make demo` runs the demo pipeline headless.
# Both create or refresh .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# `make run` keeps its data inside the checkout unless MEDIALAB_HOME says otherwise.
export MEDIALAB_HOME ?= $(CURDIR)/.medialab

.PHONY: venv run demo test bench lint clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch and torchvision (spandrel needs it) as a matching pair that pip takes
	# from the machine's wheel folder; the worker runs them on the CPU here.
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# `models demo` writes the ESRGAN last: with it there, every demo model is.
run: $(STAMP)
	test -f "$(MEDIALAB_HOME)/models/demo-esrgan-x4.safetensors" || $(BIN)/medialab models demo
	$(BIN)/medialab --pipeline examples/demo.toml

demo: $(STAMP)
	test -f "$(MEDIALAB_HOME)/models/demo-esrgan-x4.safetensors" || $(BIN)/medialab models demo
	$(BIN)/medialab run examples/demo.toml

# Test files run in parallel, one whole file per process (each starts its own demo
# models and engines; tests within a file share them). Twice the cores and two more,
# four at least, eight at most: many tests wait on a worker or a host, and since CPU
# workers fork from the worker template four processes left a fifth of two cores idle
# (vmstat: 19 %). Six took 7:43 on two cores; four 11:08, 2 min of it one failed wait.
TEST_PROCS := $(shell n=$$(( 2 * $$(nproc 2>/dev/null || echo 2) + 2 )); [ $$n -lt 4 ] && n=4; [ $$n -gt 8 ] && n=8; echo $$n)
# The suite starts many Python processes (CLI calls, engine hosts, workers): they
# keep medialab's compiled bytecode (≈ 0.1 s saved a process importing the engine),
# even where the environment says not to write it.
test: $(STAMP)
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -n $(TEST_PROCS) --dist loadfile

bench: $(STAMP)
	$(BIN)/python benchmarks/engine_overhead.py --rounds 5

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
