#!/usr/bin/env bash
# Create .venv (if missing) and install iared_video with the exact tested dependency set.
# Idempotent: a second run only checks that everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade-strategy only-if-needed \
  -c constraints.txt -e '.[test,interpret]'
.venv/bin/python -c "import torch, torchvision, timm, decord, av; print('iared_video env ready: torch', torch.__version__, '| torchvision', torchvision.__version__, '| timm', timm.__version__)"
