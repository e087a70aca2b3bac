# bgnet-lite: two commands do all set-up on a fresh machine (see README.md).
#   make book [PROFILE=quick|cpu|full]   render the book (re-executing chapters first if PROFILE is set)
#   make test                            lint, unit tests, nbval over book/ in the quick profile
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?=
# generated data and training runs: data/ and runs/ here (git-ignored), whatever folder a
# chapter runs in
export BGNET_HOME ?= $(CURDIR)
STAMP := $(VENV)/.installed-stamp
WEB_STAMP := book/_widgets/vendor/.stamp

.PHONY: install web-assets browser book test lint unit nbval clean data-synth

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[book,test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# Widget and MathJax JavaScript served by the book itself (pinned npm packages, see tools/web_assets.py).
web-assets: $(WEB_STAMP)

$(WEB_STAMP): tools/web_assets.py | $(STAMP)
	$(PY) tools/web_assets.py book/_widgets/vendor

# Debian's Chromium for the browser test of the rendered book (needs root, as on CI).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

book: $(STAMP) $(WEB_STAMP)
ifneq ($(PROFILE),)
	BGNET_PROFILE=$(PROFILE) $(PY) tools/execute_book.py book
endif
	$(VENV)/bin/jupyter-book build --all -W .

lint: $(STAMP)
	$(VENV)/bin/ruff check .

unit: $(STAMP)
	$(PY) -m pytest -q tests

nbval: $(STAMP)
	BGNET_PROFILE=quick $(PY) -m pytest -q --nbval-lax book

# pytest exits 5 when it collects nothing (e.g. no chapter yet): that is not a failure.
test: $(STAMP) $(WEB_STAMP) browser
	$(VENV)/bin/ruff check .
	BGNET_PROFILE=quick $(PY) -m pytest -q -p no:cacheprovider --nbval-lax tests book; \
	  rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; exit 0; fi; exit $$rc

clean:
	rm -rf _build
