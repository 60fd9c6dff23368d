# make run   — set up .venv on first use and start the demo site (simulator, historian, HMI)
# make test  — set up .venv on first use and run the whole test suite
# make i18n  — re-extract the message ids into i18n/locale/scada.pot, update and compile the zh_CN / ru catalogs
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench i18n system-deps clean

# First use (or pyproject.toml changed): say what happens while pip works quietly.
$(STAMP): pyproject.toml
	@echo "setting up $(VENV): first use or pyproject.toml changed (about a minute; later runs skip this)"
	@test -x $(BIN)/python || { echo "  creating the virtual environment $(VENV) with $(PYTHON) ..."; $(PYTHON) -m venv $(VENV); }
	@echo "  upgrading pip ..."
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "  installing scada-metering and its dependencies (numpy, tornado, bokeh, pymodbus, ...) ..."
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)
	@echo "$(VENV) is ready"

run: $(STAMP)
	@echo "starting the demo site: $(BIN)/scada run config/demo-site.yaml (Ctrl-C to stop)"
	@$(BIN)/scada run config/demo-site.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/scada bench tags

# New ids arrive untranslated in the .po files (exit 1 names how many): translate them.
i18n: $(STAMP)
	$(BIN)/python -m i18n.extraction

# Debian packages the tests use (real peers): needs root; .ci/run calls it.
system-deps:
	scripts/system-deps.sh

clean:
	rm -rf $(VENV) var .pytest_cache
