#!/usr/bin/env bash
# The quick search as a newcomer types it (no thread variables: the CLI picks one thread) against the same command
# with OMP_NUM_THREADS=1, alone and while another CPU-heavy process runs. Prints seconds and ratios from one run.
# Usage: bash benchmarks/bench_cli_threads.sh [TRAJECTORIES]   (default 20; the quickstart runs 100)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
out=$(mktemp -d)
unset OMP_NUM_THREADS MKL_NUM_THREADS E2GAN_THREADS
run() {  # name, env prefix
  local t0=$(date +%s.%N)
  env $2 e2gan search --preset quick --trajectories "$n" --out "$out/$1" --quiet > /dev/null
  python3 -c "print($(date +%s.%N) - $t0)"
}
e2gan search --preset quick --trajectories 1 --out "$out/warm" --quiet > /dev/null   # builds and caches the classifier once
typed=$(run typed "")
omp=$(run omp "OMP_NUM_THREADS=1")
python3 -c 'while True: pass' & burner=$!
trap 'kill $burner 2>/dev/null' EXIT
typed_busy=$(run typed_busy "")
omp_busy=$(run omp_busy "OMP_NUM_THREADS=1")
kill $burner
printf 'quick search, %s trajectories, %s cores\n' "$n" "$(nproc)"
printf '%-34s %8.1f s\n' 'as typed, alone' "$typed" 'OMP_NUM_THREADS=1, alone' "$omp" \
  'as typed, beside a busy process' "$typed_busy" 'OMP_NUM_THREADS=1, beside it' "$omp_busy"
printf 'ratio as typed / OMP_NUM_THREADS=1: alone %.2f, beside a busy process %.2f\n' \
  "$(python3 -c "print($typed / $omp)")" "$(python3 -c "print($typed_busy / $omp_busy)")"
rm -rf "$out"
