#!/usr/bin/env bash
# Quickstart: set up the environment and run example_notebooks/quickstart.ipynb
# headless, leaving out/quickstart.ipynb (executed) and out/quickstart.html.
#
#   bash scripts/quickstart.sh                       # offline: replays the notebook's bundled cassette
#   RLM_MODEL=<litellm model> bash scripts/quickstart.sh   # live model (network + that provider's API key)
set -euo pipefail

# First line of output: which model the run uses.
if [[ -n "${RLM_MODEL:-}" ]]; then
    echo "rlm_magic quickstart: RLM_MODEL=$RLM_MODEL set, running against that live model (needs network and the provider's API key)"
    unset RLM_OFFLINE
else
    echo "rlm_magic quickstart: no RLM_MODEL set, replaying the bundled cassette example_notebooks/cassettes/quickstart.jsonl offline (written for this tutorial, not recorded from a live model; no network, no API key)"
    export RLM_OFFLINE=1
    # The notebook's own `%rlm replay` must decide; these would override it.
    unset RLM_SUB_MODEL RLM_API_BASE RLM_CASSETTE RLM_CASSETTE_MODE
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
