#!/usr/bin/env bash
# Regenerate every output README.md shows, with the project's own commands (about 45 minutes on two CPU cores).
# Usage: bash benchmarks/readme_figures.sh [RUN_DIR]    (default runs/readme; figures go to nbs/images/)
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/readme}
img=nbs/images
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}   # small networks on a CPU: one thread per process is fastest
mkdir -p "$img"
rm -rf "$run"

# The quickstart: a search, then its best architecture retrained with the CPU recipe, then samples of it.
e2gan search --preset quick --out "$run" --quiet | tee "$img/quickstart.txt"
cp "$run/search.png" "$img/quick-search.png"
e2gan train --from-search "$run" --preset cpu --out "$run/retrain" --quiet > "$run/retrain.json"
e2gan eval --checkpoint "$run/retrain/best.pt" | tee "$img/quick-retrain-eval.txt"
e2gan sample --checkpoint "$run/retrain/best.pt" --n 64 --out "$img/quick-samples.png"

# The efficiency claim on the calibrated surrogate: one landscape, then every seed its own landscape.
e2gan bench search --seeds 10 --plot "$img/regret.png" | tee "$img/bench-search.txt"
e2gan bench search --seeds 10 --landscape each --plot "$img/regret-each.png" | tee "$img/bench-search-each.txt"

# The widget as a browser shows it: the screenshot the browser test takes after its click.
python -m pytest -q tests/test_browser.py && cp tests/artifacts/browser/stepper-widget.png "$img/stepper.png"
