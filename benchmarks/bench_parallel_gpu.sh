#!/usr/bin/env bash
# Parallel search on one big GPU: the paper preset with 1, 4 and 8 workers packed on one GPU (not run here: no GPU
# on the development machine, so no figures are claimed). Needs CIFAR-10 and the Inception weights where the
# package finds them (see the README), and 100 trajectories of the paper preset per run: hours, not minutes.
#   bash benchmarks/bench_parallel_gpu.sh [TRAJECTORIES]
set -euo pipefail
T=${1:-100}
OUT=${OUT:-runs/bench-parallel-gpu}
mkdir -p "$OUT"
for W in 1 4 8; do
  if [ "$W" = 1 ]; then extra=(--device cuda); else extra=(--gpus-per-worker "$(python -c "print(1 / $W)")"); fi
  start=$(date +%s)
  e2gan search --preset paper --trajectories "$T" --workers "$W" "${extra[@]}" --out "$OUT/w$W" --quiet > "$OUT/w$W.txt"
  echo "workers $W: $(( $(date +%s) - start )) s" | tee -a "$OUT/times.txt"
done
