#!/usr/bin/env bash
# The `gpu` engine's measurements in one call on the lent GPU machine (< 9 minutes in all).
#
#   export PYTHONPATH=/tmp/site:$PWD        # mujoco / mujoco_warp / warp staged into /tmp/site
#   bash benchmarks/gpu_suite.sh             # writes under $OUT (default ./gpu_suite_out)
#   bash benchmarks/gpu_suite.sh --device cpu --small   # local check on warp's CPU device, tiny sizes
#
# Parts (each its own python process under `timeout`, so one failure leaves the others running):
#   smoke    1,024 worlds on CUDA: one step vs C MuJoCo, CUDA graph == eager, standing contacts = both feet,
#            100 control steps of random targets without NaN, contacts per world (first kernel compilation here)
#   physics  control steps/s (4 substeps + state refresh) at 4,096 and 16,384 worlds, and with random targets +
#            observations + masked resets; at 16,384 also njmax 64 / nconmax 16 and a dense Jacobian
#   render   frames/s of the batched renderer for 1,024 worlds at 224x224 and 128x128
#   sheet    $OUT/contact_sheet_gpu.png: 16 worlds rendered on the GPU
#   sim      `python benchmarks/sim.py --engine gpu --envs 16384` when the simulation engineer's script exists
#   merge    $OUT/gpu_figures.json (all figures + GPU memory peaks from nvidia-smi samples per part)
# Memory: nvidia-smi memory.used sampled every 0.5 s into $OUT/nvidia_smi_mem.csv during the whole run; each part
# also records torch.cuda.max_memory_allocated and warp's mempool high-water mark.
set -u
DEVICE="cuda:0"
SMALL=""
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --small) SMALL="--small"; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
OUT="${OUT:-$PWD/gpu_suite_out}"
mkdir -p "$OUT/parts" "$OUT/logs"
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null 2>&1 || PY=python
if [ -d /tmp/site ] && [[ ":${PYTHONPATH:-}:" != *":/tmp/site:"* ]]; then
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="${PYTHONPATH:-$PWD}"
export PYTHONUNBUFFERED=1
BUDGET=${GPU_SUITE_BUDGET_S:-530}   # seconds for the whole suite
SECONDS=0

echo "== gpu_suite: device $DEVICE ${SMALL:+(small)} out $OUT python $($PY -V 2>&1)"
$PY - <<'EOF' 2>&1 | tee "$OUT/logs/versions.log"
import importlib
for name in ("torch", "numpy", "mujoco", "warp", "mujoco_warp", "PIL"):
    try:
        mod = importlib.import_module(name)
        print(f"{name} {getattr(mod, '__version__', '?')}")
    except Exception as e:
        print(f"{name} MISSING ({type(e).__name__}: {e})")
EOF

SMI_PID=""
if [[ "$DEVICE" == cuda* ]] && command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv | tee "$OUT/logs/nvidia_smi_start.log"
  (
    while true; do
      echo "$(date +%s.%N),$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)"
      sleep 0.5
    done
  ) >"$OUT/nvidia_smi_mem.csv" 2>/dev/null &
  SMI_PID=$!
fi
cleanup() { [ -n "$SMI_PID" ] && kill "$SMI_PID" 2>/dev/null; }
trap cleanup EXIT

# run_part NAME LIMIT_S CMD...: run with timeout min(LIMIT_S, what is left of the budget minus 20 s for merge)
run_part() {
  local name="$1" limit="$2"; shift 2
  local left=$((BUDGET - SECONDS - 20))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 15 ]; then
    echo "== $name: SKIPPED (budget: ${SECONDS}s used of ${BUDGET}s)"
    echo "{\"part\": \"$name\", \"status\": \"skipped: budget\"}" >"$OUT/parts/$name.json"
    return
  fi
  echo "== $name (timeout ${limit}s, at ${SECONDS}s)"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" 2>&1 | grep --line-buffered -v "^Module .* load on device" | tee "$OUT/logs/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "== $name: rc=$rc in $((SECONDS - t0))s"
  if [ "$rc" -ne 0 ] && ! grep -q '"status": "ok"' "$OUT/parts/$name.json" 2>/dev/null; then
    [ -f "$OUT/parts/$name.json" ] || echo "{\"part\": \"$name\", \"status\": \"rc=$rc (124: timeout)\"}" >"$OUT/parts/$name.json"
  fi
}

SUITE="benchmarks/gpu_suite.py"
run_part smoke 190 $PY $SUITE smoke --device "$DEVICE" $SMALL --out "$OUT"
run_part physics 170 $PY $SUITE physics --device "$DEVICE" $SMALL --out "$OUT" --budget-s 130
run_part render 130 $PY $SUITE render --device "$DEVICE" $SMALL --out "$OUT"
run_part sheet 50 $PY $SUITE sheet --device "$DEVICE" $SMALL --out "$OUT"
if [ -f benchmarks/sim.py ] && [ -f anyskill_tui/core/sim/env.py ]; then
  if [ -n "$SMALL" ]; then
    SIMARGS=(--engine gpu --device "$DEVICE" --envs 16 --steps 5 --warmup 2 --render-calls 1 --width 64 --height 64)
  else
    SIMARGS=(--engine gpu --device "$DEVICE" --envs 16384 --render-calls 5)
  fi
  SIMARGS+=(--json "$OUT/parts/sim_figures.json")
  run_part sim 90 $PY benchmarks/sim.py "${SIMARGS[@]}"
  if ! [ -f "$OUT/parts/sim.json" ]; then
    $PY - "$OUT" <<'EOF'
import json, sys, time
out = sys.argv[1]
log = open(f"{out}/logs/sim.log").read()[-4000:]
json.dump({"part": "sim", "status": "see log", "log_tail": log}, open(f"{out}/parts/sim.json", "w"), indent=2)
EOF
  fi
else
  echo "== sim: benchmarks/sim.py or core/sim/env.py absent, skipped"
fi
cleanup
SMI_PID=""
echo "== merge (at ${SECONDS}s)"
$PY $SUITE merge --out "$OUT"
echo "== gpu_suite done in ${SECONDS}s; figures: $OUT/gpu_figures.json"
