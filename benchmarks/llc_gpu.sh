#!/usr/bin/env bash
# LLC on the GPU, one call (see benchmarks/llc_train.py for the stages).
#
# Full run (at most 9.5 minutes):
#   bash benchmarks/llc_gpu.sh
#   (a) end-to-end training throughput + peak memory at 4,096 envs, (b) time-budgeted default LLC training on the
#   starter set, slim fp16 policy export ($OUT/llc_default.pt, split into .partN when > 15 MiB), (c) llc eval ->
#   $OUT/llc_eval.json, (d) curves -> $OUT/llc_curves.json + .png; $OUT/llc_summary.json holds every number.
#
# Throughput only (at most 5 minutes; BUDGET defaults to 270 s, the hard limit to 290 s):
#   bash benchmarks/llc_gpu.sh --throughput-only
#   2 warm-up + 5 timed epochs at 4,096 envs (CALM minibatch 16,384 / 4,096 D rows), then the same at 8,192 envs if
#   the budget allows: samples/s, rollout/update split, peak memory, the simulator alone, and a one-epoch
#   host-sync audit; all in $OUT/llc_summary.json.
#
# Default LLC over several calls on one warm machine (the run dir outlives $OUT, which each call empties):
#   bash benchmarks/llc_gpu.sh --skip-throughput --run-dir /root/llc_run --resume --no-eval   # train, export
#   bash benchmarks/llc_gpu.sh --skip-throughput --run-dir /root/llc_run --resume             # ... then eval
#   every checkpoint also writes the slim policy (parts) and the history to $OUT.
# --graph-ab (with --throughput-only): the same envs again with the other ppo.cuda_graph setting; --rollout-ab: with
# the other ppo.cuda_graph_rollout setting (--rollout-graph turns it on for the first run and for training);
# --latents-ab: with one latent window encoded per minibatch row (the update path before 2026-12-04).
#
# Every stage runs in the main thread under a SIGALRM deadline: nothing outlives its stage.
# Run from the repository root on the device machine.
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/llc_out}
mkdir -p "$OUT"
budget=${BUDGET:-560}
hard=${HARD_LIMIT:-565}
margin=60
for a in "$@"; do
  if [[ "$a" == "--throughput-only" ]]; then
    budget=${BUDGET:-270}
    hard=${HARD_LIMIT:-290}
    margin=10
  fi
done
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv || true
python3 -c "import torch, mujoco, warp, mujoco_warp; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'mujoco', mujoco.__version__)" || exit 3
exec timeout -k 10 "$hard" python3 benchmarks/llc_train.py --device cuda --out "$OUT" --budget "$budget" --margin "$margin" "$@"
