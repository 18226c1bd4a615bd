#!/usr/bin/env bash
# LLC data-parallel scaling on a machine with 2 (or NPROC) GPUs, one call (at most about 9.5 minutes):
#
#   bash benchmarks/llc_multi_gpu.sh
#
# 1. one GPU: the full LLC epoch (simulation + rollout + reward + every PPO/CALM update + buffers) at ENVS (4,096)
#    envs, EPOCHS (5) timed epochs after 2 warm-up ones (benchmarks/llc_train.py --throughput-only); this first run
#    also compiles the kernels into warp's cache, which the second run then finds;
# 2. NPROC GPUs under torchrun: the same per GPU (ENVS envs per GPU, NPROC x ENVS in all; every rank runs exactly
#    the one-GPU config, gradients and normaliser statistics all-reduced over NCCL, core.learn.distributed);
# 3. prints the samples/s of both and the scaling efficiency = samples/s(NPROC GPUs) / (NPROC x samples/s(1 GPU));
#    the target is >= 0.85.
#
# Files: $OUT/gpu1/llc_summary.json, $OUT/gpuN/llc_summary.json, $OUT/llc_multi_gpu.json (the figures).
# NVLink multicast stays off in every process (NCCL_NVLS_ENABLE=0). Run from the repository root.
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0
OUT=${OUT:-/tmp/llc_multi}
ENVS=${ENVS:-4096}
EPOCHS=${EPOCHS:-5}
NPROC=${NPROC:-2}
mkdir -p "$OUT"
nvidia-smi --query-gpu=index,name,memory.total,memory.used --format=csv || true
ngpu=$(python3 -c "import torch; print(torch.cuda.device_count())") || exit 3
if (( ngpu < NPROC )); then
  echo "llc_multi_gpu: needs $NPROC GPUs, $ngpu visible" >&2
  exit 3
fi
common=(--device cuda --throughput-only --bench-envs "$ENVS" --bench-envs2 0 --bench-epochs "$EPOCHS" --warmup 2
        --no-sync-audit --margin 10)

echo "== 1 GPU, $ENVS envs"
CUDA_VISIBLE_DEVICES=${GPU0:-0} timeout -k 10 300 \
  python3 benchmarks/llc_train.py "${common[@]}" --budget 285 --out "$OUT/gpu1"

echo "== $NPROC GPUs, $ENVS envs per GPU"
timeout -k 10 230 python3 -m torch.distributed.run --standalone --nproc-per-node "$NPROC" \
  benchmarks/llc_train.py "${common[@]}" --budget 215 --out "$OUT/gpu$NPROC"

python3 - "$OUT" "$NPROC" <<'EOF'
import json
import sys
from pathlib import Path

out, n = Path(sys.argv[1]), int(sys.argv[2])


def throughput(name):
    try:
        return json.loads((out / name / "llc_summary.json").read_text()).get("throughput") or {}
    except (OSError, ValueError):
        return {}


one, many = throughput("gpu1"), throughput(f"gpu{n}")
s1, sn = one.get("samples_per_s"), many.get("samples_per_s")
eff = sn / (n * s1) if s1 and sn else None
res = {
    "gpus": n,
    "envs_per_gpu": one.get("envs"),
    "one_gpu_samples_per_s": s1,
    "multi_gpu_samples_per_s": sn,
    "multi_gpu_envs": many.get("envs"),
    "scaling_efficiency": eff,
    "target": 0.85,
    "one_gpu_epoch_s": one.get("epoch_s"),
    "multi_gpu_epoch_s": many.get("epoch_s"),
    "multi_gpu_update_s": many.get("update_s"),
    "one_gpu_update_s": one.get("update_s"),
}
(out / "llc_multi_gpu.json").write_text(json.dumps(res, indent=1))
if eff is None:
    print(f"llc_multi_gpu: a run gave no figure (1 GPU: {s1}, {n} GPUs: {sn}); see the logs above")
    sys.exit(1)
print(
    f"LLC samples/s: 1 GPU {s1:,.0f} ({one.get('envs')} envs), {n} GPUs {sn:,.0f} ({many.get('envs')} envs); "
    f"scaling efficiency {eff:.3f} (target >= 0.85: {'met' if eff >= 0.85 else 'NOT met'})"
)
EOF
