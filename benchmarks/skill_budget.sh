#!/usr/bin/env bash
# The reference's whole per-prompt budget (500 epochs = 10.24 M LLC steps at 1,024 envs, rendered CLIP reward on
# every LLC step) through `anyskill train`, on the lent GPU machine. The per-call limit is 10 minutes, so a call
# trains for at most LIMIT seconds and then stops the run with SIGTERM (the run writes its checkpoint); run the
# same command again, back to back, and it resumes the run, until the 500 epochs and the final evaluation are done.
#
#   export PYTHONPATH=/tmp/site:$PWD            # mujoco_warp / warp / open_clip / ... staged there
#   LIMIT=520 bash benchmarks/skill_budget.sh   # writes $OUT/skill_budget.json (+ train log), every call
#
# DIR (default /root/skill_budget) keeps the workspace, the LLC and the CLIP file between calls. LLC=path uses
# that LLC checkpoint instead of a random spec-sized one; CLIP ViT-B-32 has random weights (no weights on that
# machine; the cost per frame is the same, the similarity values mean nothing).
set -u
DIR=${DIR:-/root/skill_budget}
OUT=${OUT:-$PWD/skill_budget_out}
LIMIT=${LIMIT:-520}
ENVS=${ENVS:-1024}
EPOCHS=${EPOCHS:-500}
PROMPT=${PROMPT:-jump forward}
mkdir -p "$OUT"
export PYTHONPATH="${PYTHONPATH:-/tmp/site:$PWD}"
export PYTHONUNBUFFERED=1
SECONDS=0
python3 benchmarks/skill_budget.py prepare --dir "$DIR" ${LLC:+--llc "$LLC"} || exit 3
echo "== prepared in ${SECONDS}s"
ANY=(python3 -m anyskill_tui --workspace "$DIR/ws")
if [ -d "$DIR/ws/runs" ] && [ -n "$(ls -A "$DIR/ws/runs" 2>/dev/null)" ]; then
  RUN=$(ls "$DIR/ws/runs" | sort -n | tail -1)
  CMD=("${ANY[@]}" train --resume "$RUN")
else
  CMD=("${ANY[@]}" train "$PROMPT" --llc "$DIR/llc.pt" --clip-weights "$DIR/clip.pt" --engine "${ENGINE:-gpu}" --envs "$ENVS"
       --epochs "$EPOCHS" --reward render)
fi
echo "== ${CMD[*]} (limit ${LIMIT}s)"
(
  while true; do
    echo "$(date +%s),$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)"
    sleep 2
  done
) >>"$OUT/nvidia_smi_mem.csv" 2>/dev/null &
SMI=$!
timeout -s TERM -k 60 "$LIMIT" "${CMD[@]}" 2>&1 | tail -c 200000 >>"$OUT/train.log"
echo "== train exit ${PIPESTATUS[0]} after ${SECONDS}s (124: stopped at the limit, resume with the same command)"
kill "$SMI" 2>/dev/null
tail -n 15 "$OUT/train.log"
python3 benchmarks/skill_budget.py report --ws "$DIR/ws" --out "$OUT/skill_budget.json"
echo "== peak nvidia-smi MiB: $(cut -d, -f2 "$OUT/nvidia_smi_mem.csv" | sort -n | tail -1)"
