# cvml — two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# The demo keeps its registry inside the checkout; point CVML_HOME elsewhere to share one.
export CVML_HOME ?= $(CURDIR)/.cvml

TINY_BASE := artifacts/tiny/base
TINY_DATA := artifacts/tiny/data/cv-raw.jsonl

.PHONY: install demo test test-fast bench clean

# torch is pinned first so pip takes the CPU build from the local disk, never a CUDA one.
$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test,gptq]"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

$(TINY_BASE)/config.json: | $(STAMP)
	$(BIN)/cvml tiny model --out $(TINY_BASE)

$(TINY_DATA): | $(STAMP)
	$(BIN)/cvml tiny data --out $(dir $(TINY_DATA))

# The whole lifecycle on the embedded default: data -> model -> quantized model -> bench
# -> offline A/B -> a served request.
demo: install $(TINY_BASE)/config.json $(TINY_DATA)
	$(BIN)/cvml validate recipes/tiny-cv.yaml
	$(BIN)/cvml curate recipes/tiny-cv.yaml
	$(BIN)/cvml finetune recipes/tiny-cv.yaml --dry-run
	$(BIN)/cvml finetune recipes/tiny-cv.yaml --overwrite
	$(BIN)/cvml models promote tiny-cv --alias prod --reason "make demo: fresh fine-tune"
	$(BIN)/cvml quantize tiny-cv@prod --recipe recipes/tiny-cv.yaml --overwrite
	$(BIN)/cvml models lineage tiny-cv
	$(BIN)/cvml bench tiny-cv@prod --recipe recipes/tiny-cv.yaml
	cat bench/tiny-cv/report.md
	$(BIN)/cvml abtest offline --a $(TINY_BASE) --b tiny-cv@prod --grounding-b strict --data data/tiny-cv --limit 32 --out abtest/tiny-cv-offline
	$(BIN)/python scripts/serve_demo.py tiny-cv@prod

# Every tier: unit, integration on the tiny model, the stores on SQLite and on a throwaway
# PostgreSQL server (started here, stopped even on failure); GPU tests are skipped without CUDA.
test: install
	$(BIN)/python scripts/pg_server.py run -- $(BIN)/pytest -q

# The unit tier alone: no model built or loaded, no database server.
test-fast: install
	$(BIN)/pytest -q -m "not integration and not gpu"

# Each benchmark prepares its own inputs.
bench: install
	$(BIN)/python benchmarks/finetune_throughput.py --recipe recipes/tiny-cv-lora.yaml
	$(BIN)/python benchmarks/curate_throughput.py
	$(BIN)/python benchmarks/serve_throughput.py
	$(BIN)/python benchmarks/fabrication_dotin.py
	$(BIN)/python benchmarks/gate_power.py

clean:
	rm -rf artifacts runs data .cvml bench abtest
