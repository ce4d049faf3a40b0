# The two commands a user needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test lint typecheck unit bench installer screenshot clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/styleclip-desktop

lint: $(STAMP)
	$(VENV)/bin/ruff check styleclip_desktop tests bench tools packaging build_installer.py

typecheck: $(STAMP)
	$(VENV)/bin/mypy styleclip_desktop

unit: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest

test: lint typecheck unit

bench: $(STAMP)
	$(VENV)/bin/styleclip-desktop bench --json

# A one-folder desktop bundle, its checksums and a self-test of the frozen app (not part of `make test`).
# build_installer.py makes its own build venv, so it needs only a plain Python.
installer:
	$(PYTHON) build_installer.py --variant cpu

# docs/screenshot.png: the real window under Xvfb (needs Debian's xvfb package).
screenshot: $(STAMP)
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) tools/screenshot.py

clean:
	rm -rf build dist *.egg-info
