#!/usr/bin/env bash
# Quickstart: set up the environment and run example_notebooks/quickstart.ipynb
# headless, leaving out/quickstart.ipynb (executed) and out/quickstart.html.
#
#   bash scripts/quickstart.sh                       # offline: the notebook's scripted local model
#   RLM_MODEL=<litellm model> bash scripts/quickstart.sh   # live model (network + that provider's API key)
set -euo pipefail

# First line of output: which model the run uses.
if [[ -n "${RLM_MODEL:-}" ]]; then
    echo "rlm_magic quickstart: RLM_MODEL=$RLM_MODEL set, running against that live model (needs network and the provider's API key)"
    unset RLM_OFFLINE
else
    echo "rlm_magic quickstart: no RLM_MODEL set, running offline against the notebook's scripted local model (no network, no API key)"
    export RLM_OFFLINE=1
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export LITELLM_LOCAL_MODEL_COST_MAP=True
NOTEBOOK="example_notebooks/quickstart.ipynb"
OUT="$ROOT/out"

bash scripts/setup.sh

[[ -f "$NOTEBOOK" ]] || { echo "rlm_magic quickstart: ERROR: $NOTEBOOK not found" >&2; exit 1; }

VENV="${RLM_VENV:-$ROOT/.venv}"
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"

status=0
"$VENV/bin/python" scripts/run_notebook.py "$NOTEBOOK" --out "$OUT" || status=$?
if [[ $status -ne 0 ]]; then
    echo "rlm_magic quickstart: FAILED (see above); partial results, if any, are in $OUT/" >&2
    exit "$status"
fi
echo "rlm_magic quickstart: done."
echo "  executed notebook: $OUT/quickstart.ipynb"
echo "  HTML copy:         $OUT/quickstart.html"
