# Two commands do all set-up on a fresh machine:
#   make serve   - virtualenv, install, start the hub on its embedded defaults (SQLite, bundled model)
#   make test    - the same set-up plus test tools, then the whole test suite
# llama.cpp (llama-cpp-python) compiles once from source: about 3-5 minutes on 2 cores. The wheel is
# kept in $(WHEELS) and reused afterwards.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LLAMA_VERSION := 0.3.36
WHEELS ?= $(HOME)/.cache/sovhub/wheels
# Portable x86-64 build (AVX2/FMA): a native build may use AMX/AVX-512 paths that some
# virtualised CPUs advertise but do not allow, which kills the process with SIGILL.
LLAMA_CMAKE ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
DATA_DIR ?= sovhub-data
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: install install-test serve test lint typecheck bench system-deps node-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel

$(VENV)/.llama: | $(BIN)/python
	@mkdir -p $(WHEELS)
	@if ! ls $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
	  echo ">>> compiling llama.cpp (llama-cpp-python $(LLAMA_VERSION)) once: about 3-5 minutes on 2 cores"; \
	  CMAKE_ARGS="$(LLAMA_CMAKE)" $(BIN)/pip wheel --no-deps --no-binary llama-cpp-python --no-cache-dir \
	    llama-cpp-python==$(LLAMA_VERSION) -w $(WHEELS) || exit 1; \
	fi
	$(BIN)/pip install -q --no-deps --force-reinstall $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	$(BIN)/pip install -q 'numpy>=1.26' 'typing-extensions>=4.5' 'diskcache>=5.6' 'jinja2>=2.11'
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.llama
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test system-deps node-deps

# Browser tests need Debian's Chromium and CJK fonts (Playwright cannot download browsers here).
system-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null) \
	      || echo "warning: could not install chromium; browser tests will not run"; \
	  else echo "note: run 'sudo apt-get install chromium fonts-noto-cjk' for the browser tests"; fi; \
	fi
	@# The replicas benchmark (bench/replicas_bench.py) puts Debian's HAProxy in front of the replicas.
	@if [ ! -x /usr/sbin/haproxy ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null) \
	      || echo "warning: could not install haproxy; bench/replicas_bench.py will not run"; \
	  else echo "note: run 'sudo apt-get install haproxy' for bench/replicas_bench.py"; fi; \
	fi

node-deps:
	@if [ -f tests/access/oidc/package-lock.json ]; then \
	  npm ci --prefix tests/access/oidc --no-audit --no-fund --silent || echo "warning: npm ci failed; OIDC tests will not run"; \
	fi

serve: install
	$(BIN)/sovhub --data-dir $(DATA_DIR) serve --host $(HOST) --port $(PORT)

test: install-test
	$(BIN)/python -m pytest -q

lint: install-test
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src

clean:
	rm -rf $(VENV) build dist *.egg-info
