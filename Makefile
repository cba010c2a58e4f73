# netcourse: two commands.  `make lab` opens the course, `make test` checks it.
# Both create .venv on first use (and again whenever pyproject.toml changes).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.netcourse-installed
SANITIZE := tests/nbval-sanitize.cfg
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: lab fresh-copy html quick test test-browser test-unprivileged test-pythons unit nbval bench doctor record execute images clean setup allow-capture

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || \
	  { echo "netcourse needs Python 3.11 or newer (pyproject.toml); '$(PYTHON)' is $$($(PYTHON) -V 2>&1). Run: make PYTHON=python3.12 ..."; exit 1; }
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV) || \
	  { echo "Could not create a virtual environment. On Debian/Ubuntu: sudo apt-get install python3-venv"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

# The learner's copy (my-notebooks/, outputs cleared) is created on first use and never overwritten.
lab: $(STAMP)
	$(BIN)/python -m netcourse learner-copy
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 $(ROOT_FLAG) my-notebooks/00_start_here.ipynb

# A clean copy of one notebook in my-notebooks/ (make fresh-copy NB=03); the old one is kept beside it.
fresh-copy: $(STAMP)
	@[ -n "$(NB)" ] || { echo "Which notebook? make fresh-copy NB=03"; exit 2; }
	$(BIN)/python -m netcourse learner-copy --fresh "$(NB)"

# The executed notebooks as static pages (images embedded) and an index from the README's course map.
html: $(STAMP)
	$(BIN)/python -m netcourse html

# The fast tier: unit tests that start no link, no child process, no kernel and no notebook (under a minute).
quick: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider tests -m "not slow and not browser" -q

# Unit tests and nbval over every notebook, in one pytest run.
# TEST_MARKS selects tests (CI's second run, as an ordinary user, leaves out the ones that run once per CI run).
TEST_MARKS ?=
test: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider --durations=15 tests notebooks $(if $(TEST_MARKS),-m "$(TEST_MARKS)") \
	  --nbval --nbval-current-env --nbval-cell-timeout=300 --nbval-sanitize-with $(SANITIZE)

# As root: the whole suite again as a throwaway ordinary user (created and removed by the script).
test-unprivileged:
	bash .ci/unprivileged

# The oldest and newest Pythons the course supports (pyproject's floor, and the newest pyenv has here):
# a venv each (.venv-3.11, .venv-3.13), one HTTPS request, the unit tests. CI runs the one `make test` did not.
PYTHONS ?= 3.11 3.13
test-pythons:
	bash .ci/pythons $(PYTHONS)

# JupyterLab in Chromium: Run All in every notebook, then every knob turned (screenshots in build/browser/).
test-browser: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider tests/test_browser.py -m browser

unit: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider tests

nbval: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider notebooks \
	  --nbval --nbval-current-env --nbval-cell-timeout=300 --nbval-sanitize-with $(SANITIZE)

# Figures, never asserted. The idle chat socket is held an hour beside the rest (IDLE=60 for a quick run).
IDLE ?= 3600
bench: $(STAMP)
	$(BIN)/python -m netcourse bench --idle-seconds $(IDLE)

doctor: $(STAMP)
	$(BIN)/python -m netcourse doctor

# Re-record the shipped captures (needs root or CAP_NET_RAW), then re-execute the notebooks.
record: $(STAMP)
	$(BIN)/python -m netcourse record

# Re-execute every notebook in place and store its outputs.
execute: $(STAMP)
	for nb in notebooks/*.ipynb; do $(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=300 "$$nb" || exit 1; done

# Live capture for an ordinary user: rebuild .venv around a private *copy* of the interpreter and
# give only that copy cap_net_raw. (On the shared interpreter, every user and program on the machine
# could sniff loopback.) Asks before it changes anything; needs sudo for setcap.
allow-capture:
	@echo "This will:"
	@echo "  1. rebuild .venv with its own copy of $(PYTHON) (python -m venv --copies);"
	@echo "  2. run: sudo setcap cap_net_raw+ep on .venv/bin/python* (those private copies only)."
	@echo "Remaining risk: anyone who can run this .venv's python can read this machine's loopback traffic."
	@printf "Continue? [y/N] "; read answer; [ "$$answer" = y ] || { echo "Nothing changed."; exit 1; }
	rm -rf $(VENV)
	$(PYTHON) -m venv --copies $(VENV)
	$(MAKE) setup
	for f in $(BIN)/python*; do [ -L "$$f" ] || sudo setcap cap_net_raw+ep "$$f" || exit 1; done
	@$(BIN)/python -m netcourse doctor || true

clean:
	rm -rf $(VENV) .venv-* *.egg-info .pytest_cache

images: $(STAMP)
	$(BIN)/python -m netcourse images
