#!/usr/bin/env bash
# The GPU figures of benchmarks/RESULTS.md, in one run on a lent GPU machine (no network there):
#   MCIE-E1 training step at the sd15 preset, 512 px, bf16 autocast, against the same UNet with
#   diffusers' default processors; and the real-model stages at real sizes with random weights.
# The machine's image has torch/transformers but no diffusers: its wheel (and importlib_metadata)
# travel in .whl/. mcie is not installed there: a folder of links rebuilds its package layout.
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
mkdir -p /tmp/pkg/mcie
for f in mcie/*; do ln -sf "$PWD/$f" /tmp/pkg/mcie/; done
for d in pipeline transforms model annotation bench; do ln -sfn "$PWD/$d" "/tmp/pkg/mcie/$d"; done
export PYTHONPATH=/tmp/site:/tmp/pkg
# run copies of the scripts so a "run from a checkout" path tweak cannot shadow the package
mkdir -p /tmp/bench && for f in benchmarks/bench_mcie_e1.py benchmarks/bench_models.py; do
  grep -v "sys.path.insert" "$f" > "/tmp/bench/$(basename "$f")"
done
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, diffusers; print(torch.__version__, transformers.__version__, diffusers.__version__)" | tee -a "$OUT/gpu.txt"
timeout 240 python3 /tmp/bench/bench_mcie_e1.py --device cuda --preset sd15 --resolution 512 --dtype bf16 \
  --batch-size 4 --steps 10 --warmup 3 2>&1 | tee "$OUT/mcie_e1_sd15.txt"
timeout 300 python3 /tmp/bench/bench_models.py --device cuda --real-size --images 16 --batch-size 4 \
  --json "$OUT/models_real.json" 2>&1 | tee "$OUT/models_real.txt"
