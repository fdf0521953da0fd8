# Quick start: `make demo` (set up + speak-to-sound on the embedded model), `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAR := $(VENV)/bin/star

.PHONY: setup demo test lint

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh
	touch $@

demo: setup
	$(STAR) listen examples/dog_barking_ked.wav
	$(STAR) generate --speech examples/dog_barking_ked.wav --out demo.wav --seed 0
	@echo "wrote demo.wav"

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check src tests
