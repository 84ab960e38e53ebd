#!/usr/bin/env bash
# GPU check of `mcie train` / `mcie edit` on a lent GPU machine: accelerate on CUDA with bf16,
# EMA and validation images; `accelerate launch` with --resume; `mcie edit --device cuda`; and the
# tiny-pixel training rate at 32 px. The machine has no Beam, so the shards are built here first:
#   mcie build --out .gpu-data/demo --samples 48 --image-size 64 --shard-size 24 --no-progress
# and travel with the wheels (see benchmarks/gpu_env.sh): run from the repository root with carry
# [".whl", ".gpu-data"] (both folders listed in .git/info/exclude).
set -uo pipefail
source benchmarks/gpu_env.sh
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, accelerate, diffusers, transformers; print(torch.__version__, accelerate.__version__, diffusers.__version__, transformers.__version__)" | tee -a "$OUT/gpu.txt"
S="$PWD/.gpu-data/demo/shards/*.tar"
cd /tmp  # ./mcie (the core folder) must not shadow the package layout in /tmp/pkg
{
echo "== 1. mcie train tiny, cuda, bf16, EMA, validation"
timeout 120 python3 -m mcie.cli train --shards "$S" --out /tmp/g1 --preset tiny --max-steps 40 --batch-size 4 \
  --device cuda --mixed-precision bf16 --ema --validate-every 20 --validation-samples 2 --validation-steps 4 --log-every 20
echo "rc=$?"
echo "== 2. accelerate launch, 1 process, cuda; resume to 60"
timeout 120 python3 -m accelerate.commands.launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
  -m mcie.cli train --shards "$S" --out /tmp/g1 --preset tiny --max-steps 60 --batch-size 4 --device cuda \
  --mixed-precision bf16 --ema --resume --log-every 20
echo "rc=$?"
echo "== 3. mcie edit on cuda"
python3 - <<'PY'
import numpy as np; from PIL import Image
Image.fromarray(np.random.default_rng(0).integers(0,255,(40,56,3),dtype=np.uint8)).save("/tmp/src.png")
PY
timeout 60 python3 -m mcie.cli edit --checkpoint /tmp/g1 --image /tmp/src.png --instruction "make the red circle blue and remove the star" --out /tmp/edited.png --device cuda --steps 10 --masks-out /tmp/masks
echo "rc=$?"
echo "== 4. tiny-pixel 32 px speed on cuda, fp32, batch 8"
timeout 120 python3 -m mcie.cli train --shards "$S" --out /tmp/g2 --preset tiny-pixel --resolution 32 --max-steps 200 --batch-size 8 --lr 2e-3 --device cuda --log-every 100
echo "rc=$?"
} 2>&1 | grep -v "Warn\|warn" | tee "$OUT/train.txt"
