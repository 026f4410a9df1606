# cvml — two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# The demo keeps its registry inside the checkout; point CVML_HOME elsewhere to share one.
export CVML_HOME ?= $(CURDIR)/.cvml

TINY_BASE := artifacts/tiny/base
TINY_DATA := artifacts/tiny/data/cv-raw.jsonl

.PHONY: install demo test bench clean

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

# The whole lifecycle that exists so far, on the embedded default.
demo: install $(TINY_BASE)/config.json $(TINY_DATA)
	$(BIN)/cvml validate recipes/tiny-cv.yaml
	$(BIN)/cvml curate recipes/tiny-cv.yaml
	$(BIN)/cvml finetune recipes/tiny-cv.yaml --dry-run
	$(BIN)/cvml finetune recipes/tiny-cv.yaml --overwrite
	$(BIN)/cvml models list
	$(BIN)/cvml models lineage tiny-cv

test: install
	$(BIN)/pytest -q

bench: install $(TINY_BASE)/config.json $(TINY_DATA)
	$(BIN)/cvml curate recipes/tiny-cv-lora.yaml
	$(BIN)/python benchmarks/finetune_throughput.py --recipe recipes/tiny-cv-lora.yaml
	$(BIN)/python benchmarks/curate_throughput.py

clean:
	rm -rf artifacts runs data .cvml
