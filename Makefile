# pcapcheck developer commands. `make test` installs what it needs by itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= fixtures/incident1-te-duplicate.pcap

# The optional compiled build (make install-compiled): its own environment, rebuilt when a source file changes.
CVENV   := .venv-compiled
CBIN    := $(CVENV)/bin
CSTAMP  := $(CVENV)/.installed
MYPY    := mypy==2.4.1
SOURCES := $(shell find pcapcheck -type f ! -path '*/__pycache__/*' 2>/dev/null)

.PHONY: install install-compiled test test-compiled test-thorough lint fixtures demo crosscheck bench bench-quick bench-micro bench-adversarial bench-compiled clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m compileall -q pcapcheck
	touch $(STAMP)

install: $(STAMP)

# The same source with the per-packet path compiled by mypyc (setup.py, setup.cfg's [pcapcheck:compiled]), installed
# into .venv-compiled: the same reports, about a third less CPU (docs/performance.md, "The compiled build"). Needs
# gcc and the Python headers; mypy is installed there to build it, never needed to run it.
$(CSTAMP): setup.py setup.cfg pyproject.toml $(SOURCES)
	test -x $(CBIN)/python || $(PYTHON) -m venv $(CVENV)
	$(CBIN)/python -m pip install --quiet --upgrade pip
	$(CBIN)/python -m pip install --quiet '$(MYPY)' wheel 'setuptools>=61'
	$(CBIN)/python -m pip install --quiet --no-build-isolation '.[test]'
	PCAPCHECK_COMPILE=1 $(CBIN)/python -m pip install --quiet --no-build-isolation --force-reinstall --no-deps .
	$(CBIN)/python -m compileall -q $$($(CBIN)/python -c 'import os, pcapcheck; print(os.path.dirname(pcapcheck.__file__))')
	$(CBIN)/pcapcheck --version | grep -q 'compiled by mypyc'
	touch $(CSTAMP)

install-compiled: $(CSTAMP)

test: $(STAMP)
	$(BIN)/python fixtures/make_fixtures.py --check
	$(BIN)/python -m pytest -q

# The compiled build checked (CI runs it after make test): every fixture's report the same byte for byte as the pure
# Python's, then the test suite against it (bench/compiled.py --suite).
test-compiled: $(STAMP) $(CSTAMP)
	$(CBIN)/python bench/compiled.py --suite

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

# The compiled build against the pure Python and tshark, in the same rounds, after checking that both write the same
# report byte for byte (bench/compiled.py).
bench-compiled: $(STAMP) $(CSTAMP)
	$(BIN)/python -m compileall -q pcapcheck
	$(BIN)/python bench/compiled.py --tshark --compiled-python $(CBIN)/python $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(CVENV) report build *.egg-info .pytest_cache .hypothesis
