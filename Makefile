# s2watch: the commands a new user needs. Only Python >= 3.11 and pip are assumed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.s2watch-installed
WARM := $(VENV)/.s2watch-kernels-compiled
DEMO_OUT ?= demo-output

.PHONY: install demo test test-fast bench bench-accuracy sysdeps notebooks clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,dask]'
	@touch $(STAMP)

# numba compiles the kernels on first use and caches them next to their source (about 40 s on a
# 2-core machine): compiled once here, on a one-month simulated detection, so that the first real
# run (a cron job, a benchmark) does not pay for it; redone when the kernels change
$(WARM): $(STAMP) $(wildcard pipeline/kernels/*.py pipeline/sources/_sim*.py)
	@echo "install: compiling the numba kernels once (cached; about a minute)"
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	    $(BIN)/s2watch --quiet detect maaten-al-sarra --source simulated \
	        --before 2024-03-01/2024-03-31 --after 2025-05-01/2025-05-31 --out "$$tmp/o" >/dev/null
	@touch $(WARM)

## install: create .venv with s2watch installed (editable) and .venv/bin/s2watch, kernels compiled
install: $(WARM)

## demo: run the main job offline on the simulated archive of Maaten al-Sarra air base
demo: install
	$(BIN)/s2watch detect maaten-al-sarra --source simulated \
	    --before 2024-03-01/2024-08-31 --after 2025-05-01/2025-10-31 --out $(DEMO_OUT)

## sysdeps: Debian packages the tests use to check outputs as users open them: gdal-bin (gdalinfo,
## ogrinfo), chromium (the report in a real browser), python3-qgis (QGIS reads styles; optional, large)
sysdeps:
	@missing=""; \
	command -v gdalinfo >/dev/null || missing="$$missing gdal-bin"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	    if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	        echo "sysdeps: installing$$missing"; \
	        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	    else \
	        echo "sysdeps: missing$$missing (needs root and apt-get); the tests that need them will skip and say so"; \
	    fi; \
	fi; \
	if ! /usr/bin/python3 -c "import qgis.core" 2>/dev/null; then \
	    if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && [ "$${S2WATCH_SKIP_QGIS:-0}" != 1 ]; then \
	        echo "sysdeps: installing python3-qgis (optional; S2WATCH_SKIP_QGIS=1 skips it)"; \
	        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-qgis >/dev/null; } \
	            || echo "sysdeps: python3-qgis could not be installed; the QGIS test will skip and say so"; \
	    fi; \
	fi

## test: every test (sets up .venv first)
test: install sysdeps
	$(BIN)/python -m pytest -q

## bench: speed benchmarks (ratios measured in one run) and source transfer figures
bench: install
	$(BIN)/python benchmarks/bench_speed.py
	$(BIN)/python benchmarks/bench_pipeline.py
	$(BIN)/python benchmarks/bench_sources.py

## bench-accuracy: detection accuracy on simulated ground truth and real OSCD pairs
bench-accuracy: install
	$(BIN)/python benchmarks/bench_accuracy.py

clean:
	rm -rf $(DEMO_OUT) bench-output .pytest_cache
