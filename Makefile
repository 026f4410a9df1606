# cvml — two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# The demo keeps its registry inside the checkout; point CVML_HOME elsewhere to share one.
export CVML_HOME ?= $(CURDIR)/.cvml

TINY_BASE := artifacts/tiny/base
TINY_DATA := artifacts/tiny/data/cv-raw.jsonl

.PHONY: install chromium demo test test-web test-fast bench clean

# torch is pinned first so pip takes the CPU build from the local disk, never a CUDA one.
$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test,gptq,structured,ray,openvino,llamacpp]"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

$(TINY_BASE)/config.json: | $(STAMP)
	$(BIN)/cvml tiny model --out $(TINY_BASE)

$(TINY_DATA): | $(STAMP)
	$(BIN)/cvml tiny data --out $(dir $(TINY_DATA))

# The whole lifecycle on the embedded default: data -> model -> quantized and exported models -> bench
# -> offline A/B -> a served request -> the web app's traffic -> a monitor report on it
# (exit 1, drift or a quality alert, is a result; 2 would be an error).
demo: install $(TINY_BASE)/config.json $(TINY_DATA)
	$(BIN)/cvml validate recipes/tiny-cv.yaml
	$(BIN)/cvml curate recipes/tiny-cv.yaml
	$(BIN)/cvml finetune recipes/tiny-cv.yaml --dry-run
	$(BIN)/cvml finetune recipes/tiny-cv.yaml --overwrite
	$(BIN)/cvml models promote tiny-cv --alias prod --reason "make demo: fresh fine-tune"
	$(BIN)/cvml quantize tiny-cv@prod --recipe recipes/tiny-cv.yaml --overwrite
	$(BIN)/cvml export openvino tiny-cv@prod --weights int4 --recipe recipes/tiny-cv.yaml --overwrite
	$(BIN)/cvml export gguf tiny-cv@prod --outtype q8_0 --recipe recipes/tiny-cv.yaml --overwrite
	$(BIN)/cvml models lineage tiny-cv
	$(BIN)/cvml bench tiny-cv@prod --recipe recipes/tiny-cv.yaml
	cat bench/tiny-cv/report.md
	$(BIN)/cvml abtest offline --a $(TINY_BASE) --b tiny-cv@prod --grounding-b strict --data data/tiny-cv --limit 32 --out abtest/tiny-cv-offline
	$(BIN)/python scripts/serve_demo.py tiny-cv@prod
	$(BIN)/python scripts/monitor_demo.py tiny-cv@prod --data data/tiny-cv --requests 96
	$(BIN)/cvml monitor report --model tiny-cv@prod --reference training --window 1h --out monitor/tiny-cv; test $$? -le 1

# Every tier: unit, integration on the tiny model, the stores on SQLite and on a throwaway
# PostgreSQL server (started here, stopped even on failure); GPU tests are skipped without CUDA.
# The run includes tests/test_web_example.py (the Next.js example in Chromium; `make test-web` alone).
test: install chromium
	$(BIN)/python scripts/pg_server.py run -- $(BIN)/pytest -q

# examples/nextjs against a real `cvml serve`, in Debian's Chromium: npm ci, next build, the routes, the page.
test-web: install chromium
	$(BIN)/python scripts/pg_server.py run -- $(BIN)/pytest -q tests/test_web_example.py

# Debian's Chromium for the browser test, driven by Playwright: never a downloaded browser.
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; }

# The unit tier alone: no model built or loaded, no database server, Ray or browser started,
# no test of more than about a second (the rule is in tests/conftest.py). One worker per core;
# one OpenMP thread each, since tiny tensors gain nothing from more and idle threads spin.
test-fast: install
	OMP_NUM_THREADS=1 $(BIN)/pytest -q -n auto -m "not integration and not gpu"

# Each benchmark prepares its own inputs.
bench: install
	$(BIN)/python benchmarks/finetune_throughput.py --recipe recipes/tiny-cv-lora.yaml
	$(BIN)/python benchmarks/curate_throughput.py
	$(BIN)/python benchmarks/serve_throughput.py
	$(BIN)/python benchmarks/fabrication_dotin.py
	$(BIN)/python benchmarks/gate_power.py
	$(BIN)/python benchmarks/monitor_power.py

clean:
	rm -rf artifacts runs data .cvml bench abtest monitor
