#!/usr/bin/env bash
# Skill (HLC) training throughput on the lent H100, one call (< 9.5 minutes):
#
#   export PYTHONPATH=/tmp/site:$PWD      # mujoco_warp / warp / open_clip / ftfy / pydantic / tensorboardX staged there
#   bash benchmarks/skill_gpu.sh [LLC.pt]  # writes $OUT/skill_figures.json (+ skill_train.log)
#
# Targets: >= 15,000 LLC steps/s with the rendered CLIP reward every LLC step at 1,024 envs (500 epochs =
# 10.24 M LLC steps in <= 12 min) and >= 200,000 LLC steps/s with the proxy reward. CLIP ViT-B-32 with random
# weights (no weights on that machine). Without an LLC path, a random spec-sized LLC.
set -u
LLC="${1:-}"
OUT="${OUT:-$PWD/skill_gpu_out}"
mkdir -p "$OUT"
export PYTHONPATH="${PYTHONPATH:-/tmp/site:$PWD}"
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1 || true
timeout 540 python benchmarks/skill_train.py --llc "$LLC" --engine gpu --envs 1024,4096 --epochs 3 \
  --budget-s 200 --out "$OUT" 2>&1 | tee "$OUT/skill_train.log"
echo "exit: ${PIPESTATUS[0]}"
cat "$OUT/skill_figures.json" 2>/dev/null | head -c 6000
