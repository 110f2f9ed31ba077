# pcapcheck developer commands. `make test` installs what it needs by itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= fixtures/incident1-te-duplicate.pcap

.PHONY: install test test-thorough lint fixtures demo crosscheck bench bench-quick bench-micro bench-adversarial bench-compiled clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m compileall -q pcapcheck
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python fixtures/make_fixtures.py --check
	$(BIN)/python -m pytest -q

# More hypothesis examples (the default profile is quick).
test-thorough: $(STAMP)
	$(BIN)/python -m pytest -q --hypothesis-profile=ci

lint: $(STAMP)
	$(BIN)/ruff check pcapcheck tests fixtures bench
	$(BIN)/python -m pytest -q tests/test_layering.py

# Regenerate fixtures/ and fail when they differ from what is committed.
fixtures: $(STAMP)
	$(BIN)/python fixtures/make_fixtures.py
	git diff --exit-code --stat -- fixtures/

demo: $(STAMP)
	$(BIN)/pcapcheck analyze $(DEMO) -o report/ || test $$? -eq 1
	@echo "open report/index.html"

# Agreement with tshark: make crosscheck CAPTURES="a.pcap b.pcapng"
CAPTURES ?= $(wildcard fixtures/*.pcap)
crosscheck: $(STAMP)
	$(BIN)/python -m pcapcheck.crosscheck $(CAPTURES)

# Benchmark against tshark (generates a ~1M-packet capture; installs tshark when missing).
# The package's bytecode is compiled first, as an installed package's is: with PYTHONDONTWRITEBYTECODE set
# (as on some CI machines), every run would compile the sources again, about 0.15 s.
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python -m compileall -q pcapcheck
	$(BIN)/python bench/run.py $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(BIN)/python -m compileall -q pcapcheck
	$(BIN)/python bench/run.py --quick

bench-micro: $(STAMP)
	$(BIN)/python -m pytest -q tests/bench --benchmark-enable --benchmark-only

# Captures that push one mechanism each, at two sizes: time linear, memory flat? (bench/adversarial.py)
bench-adversarial: $(STAMP)
	$(BIN)/python -m compileall -q pcapcheck
	$(BIN)/python bench/adversarial.py $(BENCH_ARGS)

# An experiment for the owner's decision on a compiled core (docs/performance.md): the same source with the per-packet
# path compiled by mypyc, checked for the same report, timed against the pure Python and tshark in the same rounds.
# mypy is installed into the venv for it (pcapcheck itself never needs it). BENCH_ARGS=--suite: the test suite run
# against the compiled copy instead.
bench-compiled: $(STAMP)
	$(BIN)/python -c "import mypyc" 2>/dev/null || $(BIN)/python -m pip install --quiet mypy
	$(BIN)/python bench/compiled.py --tshark $(BENCH_ARGS)

clean:
	rm -rf $(VENV) report build *.egg-info .pytest_cache .hypothesis
