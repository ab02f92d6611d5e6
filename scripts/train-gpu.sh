#!/usr/bin/env bash
# Train a recipe on a CUDA GPU inside a time box, then evaluate the adapter on
# SciFact (test) and Cranfield against BM25 on the same GPU.
#
#   scripts/train-gpu.sh BIN RUN DATA RESULTS SECONDS
#
#   BIN      the CUDA build of csplade (scripts/build-cuda.sh)
#   RUN      a run directory prepared with `csplade train contrastive
#            --prepare-only` (it holds batches.bin.gz), or one to resume
#   DATA     a directory holding the BEIR collections scifact/ and cranfield/
#   RESULTS  where logs, metrics, top-100 runs and the final checkpoint go
#   SECONDS  the training time box; a short probe and the evaluation come on top
#
# RECIPE (default assets/recipes/csplade-gpu.toml) names the recipe, DEVICE
# (default cuda) the device; MAX_STEPS
# caps the steps at what the prepared batches file holds. Steps are
# set from the probe's measured step time so that the cosine schedule ends
# inside the box; max_seconds stops the run if the estimate was optimistic.
# The base model must already be in $CSPLADE_HOME/models (no network needed).
set -uo pipefail
bin=$1 run=$2 data=$3 res=$4 budget=$5
recipe=${RECIPE:-assets/recipes/csplade-gpu.toml}
device=${DEVICE:-cuda}
mkdir -p "$res"
log() { echo "[$(date +%T)] $*" | tee -a "$res/steps.log"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >>"$res/steps.log" 2>&1
(while sleep 5; do nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader; done) >"$res/gpu-usage.log" 2>&1 &
monitor=$!
trap 'kill $monitor 2>/dev/null' EXIT

# 1. Probe: four steps in a scratch run on the same batches; the last three are timed.
step_time() {
  grep -o '"step_seconds":[0-9.e+-]*' "$1/progress.jsonl" | tail -n 3 | cut -d: -f2 |
    awk '{ s += $1; n++ } END { if (n) printf "%.4f", s / n }'
}
group=${GROUP:-16}
probe_ok=0
for g in $group 8 4; do
  probe=$(mktemp -d)
  # A training run directory (csplade's manifest), holding the run's batches.
  printf '{"kind":"training-run","csplade":"train-gpu.sh"}' >"$probe/.csplade-output.json"
  cp "$run/batches.bin.gz" "$probe/"
  log "probe: forward_group=$g"
  if timeout 240 "$bin" train contrastive --config "$recipe" --out "$probe" --device "$device" \
    --steps 4 --set forward_group=$g --set checkpoint_every=1000 >"$res/probe-$g.log" 2>&1; then
    group=$g
    per_step=$(step_time "$probe")
    cp "$probe/progress.jsonl" "$res/probe-progress.jsonl"
    probe_ok=1
    rm -rf "$probe"
    break
  fi
  tail -n 5 "$res/probe-$g.log" | tee -a "$res/steps.log"
  rm -rf "$probe"
done
[ "$probe_ok" = 1 ] || { log "every probe failed"; exit 1; }
# MAX_STEPS: how many micro-batches the prepared batches file holds.
steps=$(awk -v b="$budget" -v s="$per_step" -v m="${MAX_STEPS:-0}" \
  'BEGIN { n = int(b / s); if (n < 10) n = 10; if (m > 0 && n > m) n = m; print n }')
log "probe: ${per_step} s/step at forward_group=$group → $steps steps in ${budget} s"

# 2. Train (resumes when RUN already holds a checkpoint of the same recipe).
resume=""
[ -d "$run/checkpoint" ] && resume="--resume"
log "training"
"$bin" train contrastive --config "$recipe" --out "$run" --device "$device" $resume \
  --set steps="$steps" --set forward_group="$group" --set max_seconds="$((budget + 20))" \
  --progress-json >"$res/train-progress.jsonl" 2>"$res/train.log"
log "training exit $?"
cp "$run/progress.jsonl" "$res/progress.jsonl" 2>/dev/null
[ -f "$run/adapter.safetensors" ] && cp "$run/adapter.safetensors" "$res/"

# 3. Evaluate on the GPU: documents ≤ 256 tokens, against BM25.
for ds in scifact cranfield; do
  log "eval $ds"
  "$bin" eval --dataset "$data/$ds" --model "base+$run/adapter.safetensors" --device "$device" \
    --batch 64 --max-len 256 --system both --json --run "$res/$ds.run" \
    >"$res/eval-$ds.json" 2>"$res/eval-$ds.log"
  log "eval $ds exit $?: $(cat "$res/eval-$ds.json")"
  for sys in lsr bm25; do
    [ -f "$res/$ds.run.$sys" ] && awk '$4 <= 100' "$res/$ds.run.$sys" | gzip -9 >"$res/$ds-top100.$sys.gz" &&
      rm -f "$res/$ds.run.$sys"
  done
done
log "done"
