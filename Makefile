# The front-door commands: `make demo` (the whole local workflow), `make test` and `make lint`.
# Each creates the virtualenv and installs everything the project needs on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The Python packages of the Hugging Face inference image, for the endpoint tier of the tests.
DLC_VENV ?= .venv-dlc
DLC_DIR := tests/aws_runtime/dlc
DLC_STAMP := $(DLC_VENV)/.installed

.PHONY: demo test lint install clean site-deps site aws-runtimes

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade "pip>=24"
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mlops demo

# The site's tests need node packages and Debian's Chromium; when they cannot be installed the
# browser test skips and says why (it never passes silently).
site-deps:
	@if command -v npm >/dev/null; then (cd site && npm ci --no-audit --no-fund) || echo "warning: npm ci failed"; \
	 else echo "warning: npm not found: the site's tests will be skipped"; fi
	@if [ ! -x /usr/bin/chromium ]; then \
	   if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	     (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	       || echo "warning: could not install chromium: the browser test will be skipped"; \
	   else echo "warning: /usr/bin/chromium missing and cannot apt-get: the browser test will be skipped"; fi; \
	 fi

# AWS's serving runtime, offline: the image's packages (toolkit + multi-model-server) in $(DLC_VENV),
# and a Java runtime for multi-model-server (Debian's default-jre-headless). When either cannot be
# installed, the endpoint tier skips and says which (it never passes silently).
$(DLC_STAMP): $(DLC_DIR)/requirements.txt $(DLC_DIR)/patch_toolkit.py
	rm -rf $(DLC_VENV)
	$(PYTHON) -m venv $(DLC_VENV)
	$(DLC_VENV)/bin/python -m pip install -q --upgrade "pip>=24"
	$(DLC_VENV)/bin/python -m pip install -q -r $(DLC_DIR)/requirements.txt
	$(DLC_VENV)/bin/python $(DLC_DIR)/patch_toolkit.py
	touch $@

aws-runtimes:
	@$(MAKE) --no-print-directory $(DLC_STAMP) || echo "warning: could not build $(DLC_VENV): the endpoint tier will be skipped"
	@if ! command -v java >/dev/null; then \
	   if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	     (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless >/dev/null) \
	       || echo "warning: could not install default-jre-headless: the endpoint tier will be skipped"; \
	   else echo "warning: java missing and cannot apt-get: the endpoint tier will be skipped"; fi; \
	 fi

# The site's unit tests alone (node's test runner); `make test` runs them too, through pytest.
site: site-deps
	cd site && npm test

test: $(STAMP) site-deps aws-runtimes
	$(PY) -m pytest

# ruff (ruff.toml: pyflakes, import order, bugbear, complexity <= 10) over the tree, then mypy (mypy.ini) on
# the packages that travel into containers and the Lambda, and the pipeline code.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m mypy mlcore pipelines inference lambda_fn

clean:
	rm -rf $(VENV) $(DLC_VENV) .mlops
