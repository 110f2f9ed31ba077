# pcapcheck developer commands. `make test` installs what it needs by itself.
PYTHON ?= python3
DEMO   ?= fixtures/incident1-te-duplicate.pcap

# The install (make install; what the README's command, make demo and make bench run): pcapcheck with its per-packet
# path compiled into C extensions by mypyc (setup.py, setup.cfg's [pcapcheck:compiled]) where a C compiler and the
# Python headers are found, about three minutes; pure Python where they are not, or with PURE=1. The same reports
# either way (docs/performance.md, "The compiled build"). mypy is installed there to build it, never needed to run it.
# Rebuilt when a source file changes (seconds when only interpreted modules did: build/ keeps the object files).
VENV    := .venv
BIN     := $(VENV)/bin
MYPY    := mypy==2.4.1
PURE    ?=
# The stamp names the build asked for, so that switching PURE rebuilds (a fallback to pure Python keeps "compiled":
# nothing would compile the next time either).
STAMP   := $(VENV)/.built-$(if $(PURE),pure,compiled)
SOURCES := $(shell find pcapcheck -type f ! -path '*/__pycache__/*' 2>/dev/null)

# The development environment (make test, lint, fixtures, crosscheck, the micro-benchmarks): the source installed
# editable, pure Python, so that a change is tested as soon as it is saved.
DVENV  := .venv-dev
DBIN   := $(DVENV)/bin
DSTAMP := $(DVENV)/.installed

.PHONY: install dev test test-compiled test-thorough lint fixtures demo crosscheck bench bench-quick bench-micro bench-adversarial bench-compiled clean

$(STAMP): setup.py setup.cfg pyproject.toml $(SOURCES)
	rm -f $(VENV)/.built-* $(VENV)/.installed
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet '$(MYPY)' wheel 'setuptools>=61'
	$(BIN)/python -m pip install --quiet --no-build-isolation '.[test]'
	@if [ -n "$(PURE)" ]; then \
	    echo "make install: PURE=$(PURE), pure Python (the per-packet path not compiled)"; \
	    $(BIN)/python -m pip install --quiet --no-build-isolation --force-reinstall --no-deps .; \
	else \
	    echo "make install: compiling the per-packet path with mypyc (about three minutes; PURE=1 skips it) ..."; \
	    PCAPCHECK_COMPILE=1 $(BIN)/python -m pip install --quiet --no-build-isolation --force-reinstall --no-deps . \
	        > $(VENV)/compile.log 2>&1 \
	    || { grep -m 3 -i -E 'error' $(VENV)/compile.log; \
	         echo "make install: compiling failed (a C compiler and the Python headers are needed; the whole output:" \
	              "$(VENV)/compile.log): pure Python installed, the same reports, about half the speed"; \
	         $(BIN)/python -m pip install --quiet --no-build-isolation --force-reinstall --no-deps .; }; \
	fi
	$(BIN)/python -m compileall -q $$($(BIN)/python -c 'import os, pcapcheck; print(os.path.dirname(pcapcheck.__file__))')
	$(BIN)/pcapcheck --version
	touch $(STAMP)

install: $(STAMP)

$(DSTAMP): setup.cfg pyproject.toml
	test -x $(DBIN)/python || $(PYTHON) -m venv $(DVENV)
	$(DBIN)/python -m pip install --quiet --upgrade pip
	$(DBIN)/python -m pip install --quiet -e '.[test]'
	$(DBIN)/python -m compileall -q pcapcheck
	touch $(DSTAMP)

dev: $(DSTAMP)

test: $(DSTAMP)
	$(DBIN)/python fixtures/make_fixtures.py --check
	$(DBIN)/python -m pytest -q

# The install checked (CI runs it after make test): compiled, from the source as it is; every fixture's report the same
# byte for byte as the pure Python's; then the test suite against it (bench/compiled.py --suite).
test-compiled: $(DSTAMP) $(STAMP)
	$(BIN)/python bench/compiled.py --suite

# More hypothesis examples (the default profile is quick).
test-thorough: $(DSTAMP)
	$(DBIN)/python -m pytest -q --hypothesis-profile=ci

lint: $(DSTAMP)
	$(DBIN)/ruff check pcapcheck tests fixtures bench setup.py
	$(DBIN)/python -m pytest -q tests/test_layering.py

# Regenerate fixtures/ and fail when they differ from what is committed.
fixtures: $(DSTAMP)
	$(DBIN)/python fixtures/make_fixtures.py
	git diff --exit-code --stat -- fixtures/

demo: $(STAMP)
	$(BIN)/pcapcheck analyze $(DEMO) -o report/ || test $$? -eq 1
	@echo "open report/index.html"

# Agreement with tshark: make crosscheck CAPTURES="a.pcap b.pcapng"
CAPTURES ?= $(wildcard fixtures/*.pcap)
crosscheck: $(DSTAMP)
	$(DBIN)/python -m pcapcheck.crosscheck $(CAPTURES)

# Benchmark against tshark (generates a ~1M-packet capture; installs tshark when missing): the install, as make install
# built it (BENCH_ARGS=--pure: the development environment's pure Python instead). The source's bytecode is compiled
# first, as an installed package's is: with PYTHONDONTWRITEBYTECODE set (as on some CI machines), every run of the
# editable install would compile the sources again, about 0.15 s.
BENCH_ARGS ?=
bench: $(STAMP) $(DSTAMP)
	$(DBIN)/python -m compileall -q pcapcheck
	$(BIN)/python bench/run.py $(BENCH_ARGS)

bench-quick: $(STAMP) $(DSTAMP)
	$(DBIN)/python -m compileall -q pcapcheck
	$(BIN)/python bench/run.py --quick $(BENCH_ARGS)

bench-micro: $(DSTAMP)
	$(DBIN)/python -m pytest -q tests/bench --benchmark-enable --benchmark-only

# Captures that push one mechanism each, at two sizes: time linear, memory flat? (bench/adversarial.py)
bench-adversarial: $(STAMP)
	$(BIN)/python bench/adversarial.py $(BENCH_ARGS)

# The install (compiled) against the pure Python of the development environment and tshark, in the same rounds, after
# checking that both write the same report byte for byte (bench/compiled.py).
bench-compiled: $(STAMP) $(DSTAMP)
	$(DBIN)/python -m compileall -q pcapcheck
	$(DBIN)/python bench/compiled.py --tshark --compiled-python $(BIN)/python $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(DVENV) report build *.egg-info .pytest_cache .hypothesis
