#!/usr/bin/env bash
# What tests/test_browser.py needs, for .ci/run (as root, inside the activated virtual environment):
# Debian's Chromium and a font for it to render text with, and the playwright Python package. No browser is
# downloaded (no `playwright install`): the test launches /usr/bin/chromium itself.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
python -m pip install -q 'playwright>=1.40' 2>&1 | grep -v 'is ignored' || true
chromium --version 2>/dev/null || /usr/bin/chromium --version
python -c 'import playwright.sync_api; print("playwright", __import__("importlib.metadata").metadata.version("playwright"))'
