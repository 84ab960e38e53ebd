# Sourced (from the repository root) by the scripts that run on a lent GPU machine: gpu_run.sh,
# experiments/gpu_sweep_tiny_pixel.sh, experiments/gpu_train_check.sh. That machine has no network
# and its image has torch/transformers but no diffusers: their wheels (and importlib_metadata)
# travel in .whl/ (carry [".whl"]). mcie is not installed there: a folder of links rebuilds its
# package layout in /tmp/pkg.
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
mkdir -p /tmp/pkg/mcie
for f in mcie/*; do ln -sf "$PWD/$f" /tmp/pkg/mcie/; done
for d in pipeline transforms model annotation bench; do ln -sfn "$PWD/$d" "/tmp/pkg/mcie/$d"; done
export PYTHONPATH=/tmp/site:/tmp/pkg
