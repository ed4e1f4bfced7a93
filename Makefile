# The two front-door commands: `make demo` (the whole local workflow) and `make test`.
# Both create the virtualenv and install everything the project needs on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean benchmark-quality

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade "pip>=24"
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mlops demo

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .mlops
