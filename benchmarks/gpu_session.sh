#!/usr/bin/env bash
# The GPU measurements as one script, each part under its own time limit so one failure or hang does
# not cost the rest. The default is the fast recipe's matrix (issue 27: `scaling bench gpu --matrix`,
# plain transformers vs each switch, the best configuration per shape as a train: block, under 9 min).
#
#   benchmarks/gpu_session.sh OUT_DIR [PART ...]
#   parts: env matrix (the default); the throughput tables of issue 13: 7bfull check 0.5b 1.5b 7b4
#   (~6.5 min on one H200 with liger-kernel carried) and 0.5b-bf16 (the two levers the first profile points at: pure bf16
#   weights, no per-op autocast casts, and a 16-row micro-batch) and demo (the quick demo end to end
#   on the GPU: the trainer's own loop, checkpoints, evaluation and report, never run on a GPU yet).
#
# Writes OUT_DIR/session.log and one JSON per part (gpu.json, tp_<part>.json). Liger's fused
# cross-entropy is measured when `liger_kernel` imports; FlashAttention-2 when `flash_attn` does.
# flex_attention is measured at micro-batch 1 only (7bfull): at micro-batch 8 its warm-up did not
# finish within 100 s on 2026-11-30 (README, Known limits).
set -u
OUT=${1:?usage: gpu_session.sh OUT_DIR [PART ...]}
shift
PARTS=${*:-env matrix}
mkdir -p "$OUT"
LOG="$OUT/session.log"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
STEPS=${STEPS:-6}
WARMUP=${WARMUP:-3}

part() {  # part NAME LIMIT_S COMMAND...
  local name=$1 limit=$2
  shift 2
  echo "=== $name: start $(date +%T), limit ${limit}s: $*" | tee -a "$LOG"
  local t0=$SECONDS
  timeout -k 10 "$limit" "$@" >>"$LOG" 2>&1
  local rc=$?
  echo "=== $name: rc=$rc after $((SECONDS - t0))s" | tee -a "$LOG"
  tail -n 12 "$LOG" | grep -v '^===' || true
}
tp() {  # tp NAME LIMIT_S ARGS...: one throughput table
  local name=$1 limit=$2
  shift 2
  part "$name" "$limit" "$PY" -m scaling bench throughput --seq 2048 --steps "$STEPS" --warmup "$WARMUP" \
    --json "$OUT/tp_$name.json" "$@"
}

LIGER=$("$PY" -c 'import importlib.util as u; print(int(u.find_spec("liger_kernel") is not None))' 2>/dev/null || echo 0)
FAST="chunked+compile"
[ "$LIGER" = 1 ] && FAST="liger+compile"

for p in $PARTS; do
  case $p in
    env) part env 60 bash -c "nvidia-smi; $PY -c 'import torch, transformers, triton; print(torch.__version__, torch.version.cuda, transformers.__version__, triton.__version__, torch.cuda.get_device_name())'; $PY -c 'import liger_kernel' && echo liger: yes || echo liger: no; $PY -c 'import flash_attn' && echo flash_attn: yes || echo flash_attn: no" ;;
    matrix) part matrix 560 "$PY" -m scaling bench gpu --matrix --time-limit 480 --json "$OUT/matrix.json" ;;
    7bfull) tp 7bfull 120 --model qwen2.5-7b --precision bf16 --micro-batch 1 --steps 4 --warmup 2 --variants chunked+ckpt,flex+chunked+ckpt ;;
    check) part check 120 "$PY" -m scaling bench gpu --json "$OUT/gpu.json" ;;
    0.5b) tp 0.5b 170 --model qwen2.5-0.5b --micro-batch 8 --variants "baseline,chunked,$FAST" --profile ;;
    1.5b) tp 1.5b 150 --model qwen2.5-1.5b --micro-batch 8 --variants "baseline,$FAST" ;;
    7b4) tp 7b4 110 --model qwen2.5-7b --layers 4 --micro-batch 4 --variants "baseline,$FAST" ;;
    0.5b-bf16) tp 0.5b-bf16 150 --model qwen2.5-0.5b --micro-batch 16 --precision bf16 --variants "chunked,$FAST" ;;
    demo)  # the device returns at most 8 files: keep the demo's report only
      part demo 300 "$PY" -m scaling demo --quick --no-cache --out "${TMPDIR:-/tmp}/gpu-demo"
      cp "${TMPDIR:-/tmp}/gpu-demo/report.md" "$OUT/demo_report.md" 2>/dev/null ;;
    *) echo "unknown part '$p' (env matrix 7bfull check 0.5b 1.5b 7b4 0.5b-bf16 demo)" | tee -a "$LOG"; exit 2 ;;
  esac
done
