#!/usr/bin/env bash
# The GPU figures of benchmarks/RESULTS.md, in one run on a lent GPU machine (no network there):
#   MCIE-E1 training step at the sd15 preset, 512 px, bf16 autocast, against the same UNet with
#   diffusers' default processors; and the real-model stages at real sizes with random weights.
# Run from the repository root, with the wheels in .whl/ (see gpu_env.sh).
set -uo pipefail
source benchmarks/gpu_env.sh
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
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
