#!/usr/bin/env bash
# The quick search as a newcomer types it (the CLI picks one thread per process) against the same command with
# PyTorch's own default (one thread per core, E2GAN_THREADS=$(nproc)), alone and as two searches side by side.
# Prints seconds and ratios from one run. Usage: bash benchmarks/bench_cli_threads.sh [TRAJECTORIES]  (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
unset OMP_NUM_THREADS MKL_NUM_THREADS E2GAN_THREADS
search() {  # folder, env prefix
  env $2 e2gan search --preset quick --trajectories "$n" --out "$out/$1" --quiet > /dev/null
}
timed() {  # seconds of a shell command
  local t0=$(date +%s.%N); eval "$1"; python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')"
}
e2gan search --preset quick --trajectories 1 --out "$out/warm" --quiet > /dev/null   # builds and caches the classifier once
cores=$(nproc)
one=$(timed 'search one ""')
many=$(timed "search many E2GAN_THREADS=$cores")
one_pair=$(timed 'search a "" & search b ""; wait')
many_pair=$(timed "search c E2GAN_THREADS=$cores & search d E2GAN_THREADS=$cores; wait")
printf 'quick search, %s trajectories, %s cores (%s)\n' "$n" "$cores" "$(python3 -c 'import torch; print(torch.backends.cpu.get_cpu_capability())')"
printf '%-52s %8s s\n' 'one search, as typed (1 thread)' "$one" "one search, PyTorch's default ($cores threads)" "$many" \
  'two side by side, as typed (wall time of both)' "$one_pair" "two side by side, $cores threads each" "$many_pair"
