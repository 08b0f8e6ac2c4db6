# Two entry points for newcomers: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck bench bench-deps clean contracts chaos

$(STAMP): setup.py pyproject.toml package.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	# A real EVM node (anvil) for the EVM stub's tests and the Solidity compiler (solcjs), from the npm registry.
	npm install --no-audit --no-fund --silent
	# A real browser for the web page's end-to-end test (Debian's chromium), where missing and installable.
	sh .ci/ensure-chromium
	# twistd finds twisted/plugins/wecross_plugin.py through any sys.path entry holding twisted/plugins/:
	# put this checkout on the venv's sys.path (an editable install alone maps packages, not this directory).
	$(BIN)/python -c "import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()['purelib'], 'wecross-checkout.pth').write_text(str(pathlib.Path.cwd()) + '\\n')"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/wecross demo

test: $(STAMP)
	$(BIN)/ruff check wecross tests bench plugins twisted
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/trial -j 2 tests

# Recompile the Solidity resources of the EVM stub (ABI and bytecode are committed: routers need no compiler).
contracts: $(STAMP)
	$(BIN)/python wecross/evm/contracts/build.py

lint: $(STAMP)
	$(BIN)/ruff check wecross tests bench plugins twisted
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/wire.py
	$(BIN)/python bench/routes.py
	$(BIN)/python bench/forward.py
	$(BIN)/python bench/overlay.py
	$(BIN)/python bench/sim_scale.py --sizes 100,1000
	$(BIN)/python bench/verify.py
	$(BIN)/python bench/tx.py

# The 2PC fault campaign of tests.test_tx_campaign, longer: rounds of kills, a slow and failing log, cut links.
chaos: $(STAMP)
	$(BIN)/python bench/chaos.py

# Optional tools for bench/forward.py: wrk (else a Python load generator) and py-spy (else cProfile).
bench-deps: $(STAMP)
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk
	$(BIN)/python -m pip install -q 'py-spy>=0.4'

clean:
	rm -rf $(VENV) _trial_temp* data/demo bench/results *.egg-info
