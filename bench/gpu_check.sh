#!/usr/bin/env bash
# One script for a single-GPU machine with torch + transformers (no Ray, no pydantic): see bench/gpu_check.py.
# Usage (from the repo root): bash bench/gpu_check.sh [--tokenizer-dir DIR] [--steps N] [--sections bge,qwen3,minilm]
# Whole run: about 3-5 minutes on an H200 (the script skips sections that would start after --budget-s).
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"
out="${OUT:-/tmp}/gpu_check.txt"
timeout 480 python bench/gpu_check.py "$@" 2>&1 | grep -v "Warning\|warn(" | tee "$out"
