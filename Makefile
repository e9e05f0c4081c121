# EdgeNAS developer entry points. `make setup` is idempotent; `make test` is what CI runs.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: setup demo test lint lock clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $@

# The main job on the embedded default.
demo: setup
	$(VENV)/bin/edgenas run --output runs/demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# pytest -n 2 (pytest-xdist, one worker per core; --dist loadfile keeps a file's tests and its module fixtures
# on one worker): most tests wait on single-threaded TensorFlow tracing, so two workers nearly halve the suite.
test: setup lint
	@d=$$(mktemp -d); $(VENV)/bin/mkdocs build --strict --quiet -d "$$d/site"; rc=$$?; rm -rf "$$d"; \
	  if [ $$rc -ne 0 ]; then echo "mkdocs build --strict failed (docs/, mkdocs.yml)"; fi; exit $$rc
	@$(VENV)/bin/pytest -q -n 2 --dist loadfile tests; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure here"; fi; exit $$rc

lock:
	$(VENV)/bin/uv pip compile requirements.in --python-version 3.10 \
	  --prerelease=if-necessary-or-explicit -o requirements.lock

clean:
	rm -rf $(VENV) runs .pytest_cache
