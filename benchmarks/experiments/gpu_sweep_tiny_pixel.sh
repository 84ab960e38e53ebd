#!/usr/bin/env bash
# The tiny-pixel learning sweep (benchmarks/notes/2026-11-mcie-e1.md) on a lent GPU machine: twelve
# sweep_tiny_pixel.py runs side by side on one GPU, each printing RESULT lines every 750 steps.
# Run from the repository root with the wheels in .whl/ (see benchmarks/gpu_env.sh); TL caps
# each run's seconds.
set -uo pipefail
source benchmarks/gpu_env.sh
export OMP_NUM_THREADS=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader
S="--device cuda --steps ${STEPS:-3000} --eval-every ${EVERY:-750}"
run() { tag=$1; shift; timeout ${TL:-420} python3 benchmarks/experiments/sweep_tiny_pixel.py $S --tag $tag "$@" > "$OUT/$tag.log" 2>&1 & }
run A --types recolour --groups 32
run B --types recolour --groups 32 --ablate
run C --types recolour --groups 8
run D --types recolour --groups 8 --ablate
run E --types recolour --groups 8 --gate 1
run F --types recolour --groups 8 --train-text
run G --types recolour --groups 8 --train-text --ablate
run H --groups 8
run I --groups 8 --ablate
run J --types recolour --groups 8 --blocks 64,128
run L --types recolour --groups 8 --train-text --gate 1
run M --groups 8 --train-text --gate 1
wait
grep -h "RESULT\| 3000 \|Error\|error" "$OUT"/*.log | grep -v Warn > "$OUT/summary.txt"
cat "$OUT/summary.txt"
