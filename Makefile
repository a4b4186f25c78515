# edvis: `make site` trains on the embedded dataset and builds site/; `make test` runs the tests.
# Both create .venv and install what they need on first use (a second run installs nothing).
# `make docs` builds the documentation into site/docs/, beside the gallery.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs

EMBEDDED := data/embedded
DATA     ?= $(EMBEDDED)
RUN      ?= runs/default
OUT      ?= site
EPOCHS   ?=
CLASSES  ?= 10
SEED     ?= 0

EDVIS := $(BIN)/edvis

# The Try it page's browser runtime (onnxruntime-web, pinned in templates/vendor/package.json and
# its lock file) is fetched once from the npm registry; later builds copy it from node_modules.
VENDOR       := templates/vendor
VENDOR_STAMP := $(VENDOR)/node_modules/.installed

.PHONY: install data train export render analyze site test bench gpu-check docs clean

install: $(STAMP) $(VENDOR_STAMP)

$(VENDOR_STAMP): $(VENDOR)/package.json $(VENDOR)/package-lock.json
	@if command -v npm >/dev/null; then \
	  cd $(VENDOR) && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error && touch node_modules/.installed; \
	else echo "make: npm not found: the site will be built without its Try it page (apt-get install -y npm)"; fi

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade-strategy only-if-needed -c constraints.txt -e '.[train,explain,dev]'
	touch $(STAMP)

# The docs need only the core dependencies and mkdocs-material (the `docs` extra), not torch.
$(DOCS_STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade-strategy only-if-needed -c constraints.txt -e '.[docs]'
	touch $(DOCS_STAMP)

# The embedded dataset is drawn once; wnids.txt is written last and marks it complete.
$(EMBEDDED)/wnids.txt: | $(STAMP)
	$(EDVIS) synth --out $(EMBEDDED) --classes $(CLASSES) --seed $(SEED)

# A DATA folder named tiny-imagenet-200 that does not exist yet is downloaded and unpacked
# (edvis data resumes an interrupted download; the folder appears only once complete).
TINY_DIR := $(patsubst %/,%,$(DATA))
TINY_MISSING := $(if $(filter tiny-imagenet-200,$(notdir $(TINY_DIR))),$(if $(wildcard $(TINY_DIR)),,yes))
ifeq ($(TINY_MISSING),yes)
$(TINY_DIR)/wnids.txt: | $(STAMP)
	$(EDVIS) data tiny-imagenet --out $(TINY_DIR)
endif

data: $(if $(filter $(EMBEDDED),$(DATA)),$(EMBEDDED)/wnids.txt) $(if $(TINY_MISSING),$(TINY_DIR)/wnids.txt) | $(STAMP)

# Each stage resumes or skips what is done, so these always run and return quickly when idle.
train: data
	$(EDVIS) train --data $(DATA) --run $(RUN) $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(TRAIN_FLAGS),$(TRAIN_FLAGS))

export: train
	$(EDVIS) export --run $(RUN)

render: export
	$(EDVIS) render --run $(RUN)

analyze: render
	$(EDVIS) analyze --run $(RUN)

# build.py does export → render → analyze → site for an existing run; the docs go to $(OUT)/docs,
# which the gallery's header links to.
site: train docs $(VENDOR_STAMP)
	$(BIN)/python build.py --run $(RUN) --out $(OUT)

test: $(STAMP) $(VENDOR_STAMP)
	$(BIN)/python -m pytest -q

# Speed and memory targets: one run, one table of ratios (tests/bench/bench_*.py).
bench: $(STAMP) $(VENDOR_STAMP)
	$(BIN)/python tests/bench/run.py

# The device check (docs/rendering.md): on a machine with an NVIDIA GPU, trains, exports, renders
# on CUDA and the CPU, compares and prints one table; without one it says so and exits 0. It runs
# with the machine's own python3 and packages (torch, onnxruntime, numpy, Pillow): no install.
gpu-check:
	PYTHONPATH=. $(PYTHON) -m edvis gpu-check

# mkdocs empties and rewrites $(OUT)/docs only; the gallery build leaves files it did not write alone.
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir $(OUT)/docs

clean:
	rm -rf $(RUN) $(OUT) $(EMBEDDED)
