#!/usr/bin/env bash
# Regenerate every output README.md shows, with the project's own commands typed as the README types them (no thread
# variables: the CLI picks its own). About 45 minutes on two CPU cores.
# Usage: bash benchmarks/readme_figures.sh [PART ...]    parts: quick retrain bench browser (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
img=nbs/images
parts=${*:-quick retrain bench browser}
mkdir -p "$img"
want() { [[ " $parts " == *" $1 "* ]]; }

# The quickstart, exactly as README.md shows it.
if want quick; then
  rm -rf runs/quick
  { echo '$ e2gan search --preset quick --out runs/quick'; e2gan search --preset quick --out runs/quick --quiet; } | tee "$img/quickstart.txt"
  cp runs/quick/search.png "$img/quick-search.png"
fi
# Its hand-over retrained with the CPU recipe, scored, and sampled.
if want retrain; then
  rm -rf runs/quick/retrain
  e2gan train --from-search runs/quick --preset cpu --dataset shapes --out runs/quick/retrain --quiet > runs/quick/retrain.json
  e2gan eval --checkpoint runs/quick/retrain/best.pt | tee "$img/quick-retrain-eval.txt"
  e2gan sample --checkpoint runs/quick/retrain/best.pt --n 64 --out "$img/quick-samples.png"
fi
# The efficiency claim on the calibrated surrogate: one landscape, then every seed its own landscape.
if want bench; then
  e2gan bench search --seeds 10 --out runs/bench-search | tee "$img/bench-search.txt"
  cp runs/bench-search/regret.png "$img/regret.png"
  e2gan bench search --seeds 10 --landscape each --out runs/bench-search-each | tee "$img/bench-search-each.txt"
  cp runs/bench-search-each/regret.png "$img/regret-each.png"
fi
# The widget as a browser shows it: the screenshot the browser test takes after its click.
if want browser; then
  python -m pytest -q tests/test_browser.py && cp tests/artifacts/browser/stepper-widget.png "$img/stepper.png"
fi
