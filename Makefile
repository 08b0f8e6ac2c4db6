# Two entry points for newcomers: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck bench clean

$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# compat mode puts this checkout on sys.path, which is how twistd finds twisted/plugins/wecross_plugin.py
	$(BIN)/python -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/wecross demo

test: $(STAMP)
	$(BIN)/ruff check wecross tests bench plugins twisted
	$(BIN)/mypy
	$(BIN)/trial -j 2 tests

lint: $(STAMP)
	$(BIN)/ruff check wecross tests bench plugins twisted

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/wire.py
	$(BIN)/python bench/forward.py

clean:
	rm -rf $(VENV) _trial_temp* data/demo bench/results *.egg-info
