# Quick start targets: both work on a fresh machine with only Python 3.11.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# pip byte-compiles every module it installs (~14,000 files, 25 s of one core here); uv (by default) and pip
# --no-compile leave it to Python, which compiles only what a command imports (~2,100 files for the suite's
# stack), once, on first import: a fresh install + `make test` ~25 s sooner.  That needs Python allowed to
# write its bytecode cache, so the recipes
# run without PYTHONDONTWRITEBYTECODE (some machines set it: every import would then compile again, ~2x slower).
# (even `make PYTHONDONTWRITEBYTECODE=1` is stripped: a venv's bytecode is Python's own cache, not the tree's.)
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test test-fast install bench clean

# uv installs the same pinned packages as pip in ~10 s instead of ~23 (a fresh venv, empty caches, measured
# 2026-12-05); it is pip-installed first, pinned here.  Where uv cannot be installed or fails, pip does the install.
UV     := uv==0.13.9

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (set PYTHON=...)"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	{ $(BIN)/python -m pip install --quiet --disable-pip-version-check $(UV) && \
	  $(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[test]'; } || \
	$(BIN)/python -m pip install --quiet --no-compile -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)  ## small default study: trains, evaluates, writes a report, prints its path
	$(BIN)/mtdqn study quick

# One pytest-xdist worker per core (at most 4). loadgroup: each worker takes whole groups (mostly a test file,
# whose trained fixtures are then built once; tests/conftest.py says which are not), in the order
# tests/xdist_order.py picks from their measured seconds (longest first, evened out for xdist's scheduler).
XDIST  := -n auto --maxprocesses 4 --dist loadgroup --no-loadscope-reorder
PYTEST := JAX_PLATFORMS=cpu $(BIN)/python -m pytest -q $(XDIST)
# The suite mostly compiles (tests/profile_summary.py): tests not marked `optimized` run without XLA's
# optimization passes and with XLA:CPU's older loop emitters (tests/conftest.py adds the flag), which compile
# faster; the learning tests, digests of computed numbers and bit-for-bit comparisons of two programs run as
# users compile.  Both phases always run; the exit status fails if either failed.  Every `optimized` test is also
# `slow`, so `make test-fast` is the second phase alone.
NO_OPT := JAX_DISABLE_MOST_OPTIMIZATIONS=1

test: $(STAMP)  ## the whole test suite (CPU; learning tests included)
	$(PYTEST) -m "optimized"; a=$$?; $(NO_OPT) $(PYTEST) -m "not optimized"; b=$$?; exit $$((a || b))

test-fast: $(STAMP)  ## everything not marked slow (slow: over ~1.5 s in a cold profile): the edit loop
	$(NO_OPT) $(PYTEST) -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) .jax_cache .pytest_cache
