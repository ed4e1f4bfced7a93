# The two front-door commands: `make demo` (the whole local workflow) and `make test`.
# Both create the virtualenv and install everything the project needs on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean site-deps site

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

# The site's unit tests alone (node's test runner); `make test` runs them too, through pytest.
site: site-deps
	cd site && npm test

test: $(STAMP) site-deps
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .mlops
