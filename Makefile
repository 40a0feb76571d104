# The single source of commands: README, CI and developers all use these targets.
# `make help` lists them. Every pipeline step is one target calling one `research-job` command.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOT ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
RJ          := $(VENV)/bin/research-job
CONFIG      ?= configs/demo.yaml
# the default model (research_job.models.registry.DEFAULT_MODEL; docs/quality.md says why)
MODEL       ?= fusion:musicnn-msd+musicnn-mtt
ARTIFACTS   ?= artifacts
# the folder name research_job.layout.version_name gives MODEL (/ -> --, : -> -, other unsafe characters -> _)
model_dir    = $(subst ?,_,$(subst &,_,$(subst =,_,$(subst +,_,$(subst :,-,$(subst /,--,$(1)))))))
VERSION_DIR ?= $(ARTIFACTS)/v1_model_$(call model_dir,$(MODEL))
DEMO_DIR    ?= .cache/demo_corpus
DEMO_TRACKS ?= 128
RENDERING   ?= ensemble
MUSICNN_WEIGHTS_DIR ?= .cache/musicnn
export MUSICNN_WEIGHTS_DIR
STEP_ARGS   = --config $(CONFIG) --model $(MODEL)

NODE_STAMP  := node_api/node_modules/.installed
NODE_BUILT  := node_api/dist/src/server.js
NODE_SRC    := $(shell find node_api/src node_api/web -type f \( -name '*.ts' -o -name '*.html' -o -name '*.css' \) 2>/dev/null) \
               node_api/tsconfig.json node_api/tsconfig.build.json node_api/tsconfig.web.json node_api/scripts/web-assets.mjs \
               node_api/scripts/compile-schemas.mjs $(wildcard artifact_schema/*.schema.json)

.PHONY: help install install-dev weights node-install node-build demo demo-corpus run export-metadata pull-audio \
        standardize-audio embed build-index evaluate report previews export-interactions train-recs validate publish compare-models serve \
        demo-deps demo-piano embed-segments find-similar realmusic-corpus realmusic train-head quality \
        test test-python test-node lint format bench bench-quick bench-deps bench-report bench-ray bench-recs soak timings clean \
        export-model quantize bench-runtime bench-precision

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[demo,hf,dev,ray,onnx]'
	touch $@

install: $(VENV)/.installed weights $(NODE_STAMP) ## .venv (pinned CPU torch, every dependency), musicnn weights, node_api's npm packages

install-dev: install ## the same as install (kept for old scripts)

weights: $(VENV)/.installed ## fetch the musicnn checkpoints from the musicnn wheel on PyPI (no deps installed)
	$(PY) scripts/fetch_musicnn_weights.py --dest $(MUSICNN_WEIGHTS_DIR)

$(NODE_STAMP): node_api/package.json node_api/package-lock.json
	cd node_api && npm ci --no-audit --no-fund
	touch $@

node-install: $(NODE_STAMP) ## npm ci in node_api/ (once; again when package*.json change)

$(NODE_BUILT): $(NODE_STAMP) $(NODE_SRC)
	npm --prefix node_api run build:prod

node-build: $(NODE_BUILT) ## compile the Node API once (npm start and make serve run what was built)

demo-deps: ## FluidSynth + a GM soundfont for the demo renders (apt, when root); without them a plain synth is used
	@if command -v fluidsynth >/dev/null && [ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ]; then echo "fluidsynth present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fluidsynth fluid-soundfont-gm >/dev/null) \
	  || echo "apt-get failed: the demo renders with the plain additive synth"; \
	else echo "fluidsynth not installed and not root: the demo renders with the plain additive synth"; fi

demo-corpus: $(VENV)/.installed demo-deps ## render the demo catalogue (music21 scores -> audio in 5 codecs, SQLite, local object store)
	$(PY) -m research_job.demo.build --out $(DEMO_DIR) --n-tracks $(DEMO_TRACKS) --rendering $(RENDERING)

demo: install demo-corpus node-build ## fresh machine -> installed, demo corpus rendered, pipeline run, recommenders trained, API built, table printed
	$(RJ) run $(STEP_ARGS)
	$(RJ) export-interactions $(STEP_ARGS)
	$(RJ) train-recs $(STEP_ARGS)
	$(RJ) report $(STEP_ARGS)
	$(RJ) validate $(STEP_ARGS)

demo-piano: install demo-deps ## the single-instrument control: same scores rendered on one piano, same pipeline
	$(PY) -m research_job.demo.build --out $(DEMO_DIR)_piano --n-tracks $(DEMO_TRACKS) --rendering piano
	$(RJ) run --config configs/demo_piano.yaml --model $(MODEL)

run: ## all steps in order (uses CONFIG, MODEL)
	$(RJ) run $(STEP_ARGS)

export-metadata: ## catalogue database -> metadata/tracks_metadata.csv
	$(RJ) export-metadata $(STEP_ARGS)

pull-audio: ## object store -> audio_cache/<album_id>/<track_id>.<ext>
	$(RJ) pull-audio $(STEP_ARGS)

standardize-audio: ## decode to mono float32 at the model's rate -> audio_wav/
	$(RJ) standardize-audio $(STEP_ARGS)

embed: ## one L2-normalised embedding per track -> embeddings/
	$(RJ) embed $(STEP_ARGS)

build-index: ## FAISS flat + HNSW, hnswlib HNSW -> index/
	$(RJ) build-index $(STEP_ARGS)

evaluate: ## composer-retrieval proxy task -> eval/
	$(RJ) evaluate $(STEP_ARGS)

report: ## evaluation report -> eval/report.html (self-contained), report.json, clusters.json, figures/
	$(RJ) report $(STEP_ARGS)

export-interactions: ## listening events (catalogue database or CSV; + the API's feedback table) -> interactions/
	$(RJ) export-interactions $(STEP_ARGS)

train-recs: ## popularity, ALS, content, hybrid recommenders + their time-split evaluation -> recs/
	$(RJ) train-recs $(STEP_ARGS)

previews: ## Ogg/Opus previews (20 s from the middle, mono 48 kHz) of the embedded tracks -> previews/
	$(RJ) previews $(STEP_ARGS)

validate: ## check a whole version folder against the schemas and itself
	$(RJ) validate $(STEP_ARGS)

publish: ## upload the version folder to S3 (BUCKET=..., ENDPOINT_URL=... for S3-compatible stores)
	$(RJ) publish $(STEP_ARGS) --bucket $(BUCKET) $(if $(ENDPOINT_URL),--endpoint-url $(ENDPOINT_URL),)

COMPARE_ENTRIES ?= fusion:musicnn-msd+musicnn-mtt\#center,musicnn-msd,musicnn-mtt,musicnn-msd\#center,dsp-stats,random
compare-models: ## embed + evaluate several models on the demo metadata -> artifacts/comparison/comparison.{json,md}
	$(RJ) compare-models --version-dir $(VERSION_DIR) --out-dir $(ARTIFACTS)/comparison --entries '$(COMPARE_ENTRIES)'

embed-segments: ## optional 30 s / 15 s hop segment embeddings beside the track embeddings
	$(RJ) embed-segments $(STEP_ARGS)

find-similar: ## query by audio: make find-similar QUERY=my_track.wav [K=10]
	$(RJ) find-similar --query $(QUERY) --version-dir $(VERSION_DIR) --k $${K:-10}

REALMUSIC_DIR ?= .cache/realmusic_corpus
realmusic-corpus: $(VENV)/.installed ## the real-music development corpus: 7 pinned Debian soundtrack packages (apt, ~565 MB)
	$(PY) -m research_job.realmusic.build --out $(REALMUSIC_DIR)

realmusic: install realmusic-corpus ## the whole pipeline on the real-music corpus (recorded game soundtracks), frames kept
	$(RJ) run --config configs/realmusic.yaml --model $(MODEL)
	$(RJ) embed --config configs/realmusic.yaml --model $(MODEL) $(FRAME_ARGS)

FRAME_ARGS  ?= --frames penultimate,mean_pool,max_pool --views 4 --view-sec 30
HEAD_ARGS   ?= --objective contrastive --architecture mlp --split track
train-head: ## train a head on the version folder's frames: make train-head HEAD_ARGS='--objective triplet --split label'
	$(RJ) embed $(STEP_ARGS) $(FRAME_ARGS)
	$(RJ) train-head $(STEP_ARGS) $(HEAD_ARGS)

quality: ## the quality benchmark on both corpora (long: ~1-2 h) -> bench/results/quality_*.json, docs/quality.md, README
	$(PY) -m bench.quality --corpus demo
	$(PY) -m bench.quality --corpus realmusic

serve: node-build ## serve the demo artifacts with the Node API on 127.0.0.1:8080
	cd node_api && ARTIFACTS_DIR=$(abspath $(VERSION_DIR)) PORT=$${PORT:-8080} npm start

test: lint test-python test-node ## the whole test suite: ruff, Python (pytest), Node (node --test)

test-python: $(VENV)/.installed weights
	bash scripts/ensure_chromium.sh
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-node: $(NODE_STAMP)
	cd node_api && PYTHON=$(abspath $(PY)) ARTIFACT_SCHEMA_DIR=$(abspath artifact_schema) npm test

timings: ## the README's newcomer figures: a fresh clone, `make demo` then `make test`, timed -> docs/newcomer_timings.json
	$(PYTHON_BOOT) scripts/newcomer_timings.py --out docs/newcomer_timings.json

lint: $(VENV)/.installed ## ruff check + ruff format --check
	$(VENV)/bin/ruff check research_job tests bench scripts deploy
	$(VENV)/bin/ruff format --check research_job tests bench scripts deploy

format:
	$(VENV)/bin/ruff check --fix research_job tests bench scripts deploy
	$(VENV)/bin/ruff format research_job tests bench scripts deploy

bench-deps: install node-build ## autocannon for the Node load test, the compiled Node API
	npm --prefix bench/node ci --no-audit --no-fund

bench: bench-deps ## full benchmarks (long: N up to 1M) -> bench/results/, docs/benchmarks.md
	$(PY) -m bench.run --full

bench-quick: bench-deps ## a few minutes on 2 cores -> bench/results/*_quick.json, docs/benchmarks.md
	$(PY) -m bench.run --quick

bench-report: $(VENV)/.installed ## research-job report on 100k synthetic tracks (~6 min on 2 cores) -> bench/results/report_quick.json
	$(PY) -m bench.report_bench --quick

bench-ray: $(VENV)/.installed weights ## embed engines local (1, 2 processes) vs Ray (2 actors x 1 CPU, local cluster) on 64 demo tracks and 8 synthetic 4-min tracks: wall, cluster start, scheduling overhead per track and shard, RSS, incremental, 1M-track sizing (~6-7 min on 2 cores) -> bench/results/ray_quick.json
	$(PY) -m bench.run --quick --only ray

bench-recs: bench-deps ## train-recs and the five recommendation endpoints on 100k synthetic tracks x 10k listeners: p50/p95/p99 per route against /health and /nearest in the same run (~6 min on 2 cores) -> bench/results/recs_quick.json
	$(PY) -m bench.recs_bench

EXPORT_MODEL ?= musicnn-msd
export-model: $(VENV)/.installed weights ## a musicnn network -> ONNX + model_meta.json: make export-model [EXPORT_MODEL=musicnn-mtt] -> artifacts/models/<model>-onnx/
	$(RJ) export-model --model '$(EXPORT_MODEL)' --format onnx

DEMO_VERSION ?= $(ARTIFACTS)/v1_model_fusion-musicnn-msd_musicnn-mtt
quantize: $(VENV)/.installed weights ## int8 musicnn-msd and -mtt calibrated on the demo corpus (after make demo; ~1.5 min), installed for ?runtime=onnx&precision=int8 -> artifacts/models/musicnn-*-int8/
	$(RJ) export-model --model 'musicnn-msd?runtime=onnx' --precision int8 --calibrate-from $(DEMO_VERSION) --out $(ARTIFACTS)/models/musicnn-msd-int8
	$(RJ) export-model --model 'musicnn-mtt?runtime=onnx' --precision int8 --calibrate-from $(DEMO_VERSION) --out $(ARTIFACTS)/models/musicnn-mtt-int8

bench-runtime: quantize ## GEMM ceilings, the network on torch / onnx fp32 / int8 at 1 and 2 threads, the embed step fp32 vs int8 on 1 and 2 cores and beside a CPU-bound process (~10 min on 2 cores) -> bench/results/runtime.json
	$(PY) -m bench.runtime_bench

bench-precision: $(VENV)/.installed weights ## int8 vs float32 per-track cosine and P@5 (paired CIs) on the demo and real-music corpora (~25 min; make realmusic-corpus first) -> bench/results/precision.json
	$(PY) -m bench.precision_bench

soak: bench-deps ## the Node API under load while hostile version folders are reloaded (30 s) -> bench/results/soak_quick.json
	$(PY) -m bench.run --quick --only soak

clean: ## remove generated artifacts (keeps .venv and caches)
	rm -rf $(ARTIFACTS)/v1_model_*
