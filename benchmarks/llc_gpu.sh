#!/usr/bin/env bash
# LLC on the GPU, one call of at most 9.5 minutes (see benchmarks/llc_train.py for the stages):
#   (a) end-to-end training throughput + peak memory at 4,096 envs, (b) time-budgeted default LLC training on the
#   starter set, slim fp16 policy export ($OUT/llc_default.pt, split into .partN when > 15 MiB), (c) llc eval ->
#   $OUT/llc_eval.json, (d) curves -> $OUT/llc_curves.json + .png; $OUT/llc_summary.json holds every number.
# Run from the repository root on the device machine:
#   bash benchmarks/llc_gpu.sh            (BUDGET=560 seconds by default; the script stops ~60 s before it)
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/llc_out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv || true
python3 -c "import torch, mujoco, warp, mujoco_warp; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'mujoco', mujoco.__version__)" || exit 3
exec timeout -k 10 "${HARD_LIMIT:-565}" python3 benchmarks/llc_train.py --device cuda --out "$OUT" --budget "${BUDGET:-560}" "$@"
