#!/usr/bin/env bash
# Build the documentation site offline into docs/_build/html: the notebooks are executed (any error fails the
# build), a broken cross-reference fails it (-W -n), and so does any page that would load from the network.
# INFLUENCE_WIDGETS_FAST=1 runs the notebooks in their fast mode (CI); unset, in full mode.
set -euo pipefail
cd "$(dirname "$0")"
rm -rf _build/html
python -m sphinx -b html -W --keep-going -n -q . _build/html
python check_offline.py _build/html
echo "docs built: $(pwd)/_build/html/index.html"
