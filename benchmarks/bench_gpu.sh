#!/usr/bin/env bash
# The GPU figures of the README in one short run (a few minutes on one big GPU): reward time split, training step
# time, bfloat16's ranking, and the paper preset's 10-trajectory search with 1 and with 4 environments on the GPU.
# Made for a machine without internet: the data set is the procedural `shapes` (CIFAR-10's size and layout: 32x32
# RGB) unless DATASET says otherwise, and without INCEPTION_WEIGHTS the Inception network has random weights
# (timings only: the same network and the same work, meaningless scores).
#   bash benchmarks/bench_gpu.sh                        # writes benchmarks/results/gpu-<date>/
#   OUT=/tmp/x T=10 DEVICE=cuda PRESET=paper bash benchmarks/bench_gpu.sh
# On a CPU (a check of the script, not figures):
#   DEVICE=cpu PRESET=quick T=2 NUM_IMAGES=200 STEPS=2 ARCHS=3 bash benchmarks/bench_gpu.sh
set -uo pipefail
DEVICE=${DEVICE:-cuda}; PRESET=${PRESET:-paper}; T=${T:-10}; DATASET=${DATASET:-shapes}; NUM_IMAGES=${NUM_IMAGES:-5000}; STEPS=${STEPS:-20}; ARCHS=${ARCHS:-12}
OUT=${OUT:-benchmarks/results/gpu-$(date +%Y%m%d-%H%M)}
mkdir -p "$OUT"
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }
python -c "import torch; print(torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')" | tee "$OUT/device.txt"
if [ -z "${INCEPTION_WEIGHTS:-}" ]; then
  INCEPTION_WEIGHTS="$OUT/random-inception.pth"
  python - "$INCEPTION_WEIGHTS" <<'PY'
import sys, torch, torch.nn as nn
from unittest import mock
import torch_fidelity.feature_extractor_inceptionv3 as fe
with mock.patch.object(fe, 'load_state_dict_from_url', lambda *a, **k: {}), \
     mock.patch.object(fe.FeatureExtractorInceptionV3, 'load_state_dict', lambda self, *a, **k: None):
    net = fe.FeatureExtractorInceptionV3('inception-v3-compat', ['2048'])
torch.manual_seed(0)
for m in net.modules():
    if isinstance(m, nn.Conv2d): nn.init.kaiming_normal_(m.weight, nonlinearity='relu')
torch.save(net.state_dict(), sys.argv[1])
PY
  log "InceptionV3 with random weights (timings only)"
fi
export E2GAN_INCEPTION_WEIGHTS=$INCEPTION_WEIGHTS
run() { local name=$1 limit=$2; shift 2; local t0=$(date +%s.%N)
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1; local rc=$?
  log "$name: rc $rc, $(python -c "print(f'{$(date +%s.%N) - $t0:.1f}')") s (output: $name.txt)"; }
[ "$DEVICE" = cpu ] && log "reward-inception: skipped on the CPU (20,000 reference images through InceptionV3)" || \
  run reward-inception 300 e2gan bench reward --dataset "$DATASET" --num-images "$NUM_IMAGES" --backend inception --device "$DEVICE" --json
run reward-classifier 300 e2gan bench reward --dataset "$DATASET" --num-images "$NUM_IMAGES" --backend classifier --device "$DEVICE" --json
run train-retrain-widths 300 e2gan bench train --device "$DEVICE" --steps "$STEPS" --json
run train-search-widths 300 e2gan bench train --device "$DEVICE" --steps "$STEPS" --gf-dim 16 --df-dim 16 --json
run bf16-ranking 600 python benchmarks/bench_bf16_ranking.py --preset "$PRESET" --dataset "$DATASET" --device "$DEVICE" --archs "$ARCHS"
tail -n 1 "$OUT/bf16-ranking.txt" | tee -a "$OUT/summary.txt"
if [ "$DEVICE" = cpu ]; then W4=(--workers 2); else W4=(--workers 4 --gpus-per-worker 0.25); fi
run search-1-env 900 e2gan search --preset "$PRESET" --dataset "$DATASET" --trajectories "$T" --device "$DEVICE" --out "$OUT/search1" --quiet
run search-4-envs 900 e2gan search --preset "$PRESET" --dataset "$DATASET" --trajectories "$T" "${W4[@]}" --out "$OUT/search4" --quiet
for d in search1 search4; do
  [ -f "$OUT/$d/summary.json" ] && python -c "import json,sys; s=json.load(open(sys.argv[1])); print(sys.argv[2], {k: s.get(k) for k in ('trajectories','seconds','train_seconds','eval_seconds','workers')})" "$OUT/$d/summary.json" "$d" | tee -a "$OUT/summary.txt"
done
rm -f "$OUT/random-inception.pth"
