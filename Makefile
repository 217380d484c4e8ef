# Two commands do all set-up on a fresh machine:
#   make serve   - virtualenv, install, start the hub on its embedded defaults (SQLite, bundled model)
#   make test    - the same set-up plus test tools, lint and types (make check), then the whole test suite
# llama.cpp (llama-cpp-python) compiles once from source: about 3-5 minutes on 2 cores. The wheel is
# kept in $(WHEELS) and reused afterwards.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WHEELS ?= $(HOME)/.cache/sovhub/wheels
DATA_DIR ?= sovhub-data
HOST ?= 127.0.0.1
PORT ?= 8080
# scripts/install.sh does the installing (the container image runs it too); it reads these. The
# llama.cpp version is pinned in pyproject.toml, its portable build flags in the script
# (`make install LLAMA_CMAKE=...` overrides them).
export PYTHON VENV WHEELS LLAMA_CMAKE

.PHONY: install install-test serve test check lint typecheck system-deps node-deps clean

$(VENV)/.installed: pyproject.toml scripts/install.sh
	scripts/install.sh runtime

$(VENV)/.installed-test: pyproject.toml scripts/install.sh
	scripts/install.sh test

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

# Lint and types first: a finding fails the run before the (long) suite starts.
test: check
	$(BIN)/python -m pytest -q

check: lint typecheck

lint: install-test
	$(BIN)/ruff check src tests bench

typecheck: install-test
	$(BIN)/mypy --strict src/sovhub

clean:
	rm -rf $(VENV) build dist *.egg-info
