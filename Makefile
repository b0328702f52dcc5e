# Two entry points for a fresh machine (see README): `make repro` and `make test` (`make test-fast` skips the slow tests).
VENV ?= .venv
PYTHON ?= python3
# torch is installed first, and only when missing. On machines with a local CPU build of 2.13.0 this pin
# takes it; elsewhere it is the normal PyPI torch. Override with `make setup TORCH_SPEC=torch`.
TORCH_SPEC ?= torch==2.13.0
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: setup repro test test-fast lint browser screenshots clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

repro: setup
	dvc repro

lint: setup
	ruff check .

test: setup browser lint
	pytest

# The fast tier (a few minutes on 2 cores): every test but those marked slow, i.e. the real DVC pipeline,
# dvc exp, a full training run or a browser. No browser install: `make test` runs everything.
test-fast: setup lint
	pytest -m "not slow"

# Headless Chromium + chromedriver for the report tests (Debian packages). Skipped when not root or no apt.
browser:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	      || echo "warning: could not install chromium; browser tests will be skipped"; \
	  else echo "note: chromium not found and cannot be installed here; browser tests will be skipped"; fi; }

# Full-page 1400 px PNGs of every page of reports/ into screenshots/ (git-ignored), for looking without a browser.
screenshots: setup browser
	python scripts/screenshots.py

clean:
	rm -rf $(VENV)
