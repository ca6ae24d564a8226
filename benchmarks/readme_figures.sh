#!/usr/bin/env bash
# Regenerate every output README.md shows, with the project's own commands typed as the README types them (no thread
# variables: the CLI picks its own). About two hours on two CPU cores.
# Usage: bash benchmarks/readme_figures.sh [PART ...]    parts: quick retrain bench proxy browser (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
img=nbs/images
parts=${*:-quick retrain bench proxy browser}
mkdir -p "$img"
want() { [[ " $parts " == *" $1 "* ]]; }

# The quickstart, exactly as README.md shows it.
if want quick; then
  rm -rf runs/quick
  { echo '$ e2gan search --preset quick --out runs/quick'; e2gan search --preset quick --out runs/quick --quiet; } | tee "$img/quickstart.txt"
  cp runs/quick/search.png "$img/quick-search.png"
fi
# The paper's agent's hand-over of the quick search (e2gan search --preset quick --agent sac) retrained with the CPU
# recipe, scored, and sampled.
if want retrain; then
  rm -rf runs/quick/retrain
  e2gan train --arch 0 0 1 1 1 0 0 1 0 1 0 0 1 0 --preset cpu --dataset shapes --out runs/quick/retrain --quiet > runs/quick/retrain.json
  e2gan eval --checkpoint runs/quick/retrain/best.pt | tee "$img/quick-retrain-eval.txt"
  e2gan sample --checkpoint runs/quick/retrain/best.pt --n 64 --out "$img/quick-samples.png"
fi
# The efficiency claim on the report split of the surrogate family, and the Stable-Baselines3 peer.
if want bench; then
  e2gan bench search --split report --seeds 20 --out runs/bench-search-report | tee "$img/bench-search-report.txt"
  cp runs/bench-search-report/regret.png "$img/regret-report.png"
  e2gan bench search --split report --seeds 20 --agents sb3-sac,random --out runs/bench-sb3 | tee "$img/bench-sb3-report.txt"
fi
# The claim on the real proxy task: 4 agents x 5 seeds, each hand-over re-scored by 10 fresh proxy trainings.
if want proxy; then
  e2gan bench proxy --seeds 5 --rescore 10 --workers 2 --out runs/bench-proxy | tee "$img/bench-proxy.txt"
  cp runs/bench-proxy/bench.json "$img/bench-proxy.json"; cp runs/bench-proxy/proxy.png "$img/bench-proxy.png"
fi
# The widget as a browser shows it: the screenshot the browser test takes after its click.
if want browser; then
  python -m pytest -q tests/test_browser.py && cp tests/artifacts/browser/stepper-widget.png "$img/stepper.png"
fi
