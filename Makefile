# One virtualenv, made on first use from pyproject.toml.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint typecheck clean lock

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/python run_bot.py --console

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# Re-pin runtime dependencies after changing pyproject.toml (needs network or a wheel cache).
lock:
	rm -rf .lockvenv && $(PY) -m venv .lockvenv && .lockvenv/bin/pip install --quiet .
	{ echo "# Runtime dependencies, exactly as tested. The Dockerfile installs these, then the project wheel"; \
	  echo "# with --no-deps. Regenerate after changing pyproject.toml: make lock"; \
	  .lockvenv/bin/pip freeze | grep -v '^discord-trader'; } > requirements.lock
	rm -rf .lockvenv
