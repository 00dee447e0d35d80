#!/usr/bin/env bash
# Run the test suite: bash scripts/test.sh [pytest args...]
#
# Sets up the environment first (scripts/setup.sh; fast when nothing changed),
# then runs ONE pytest invocation over tests/ and, when example_notebooks/
# holds at least one .ipynb, over those notebooks with nbval as well:
#
#   python -m pytest [-o testpaths="tests example_notebooks" --nbval --nbval-current-env] "$@"
#
# One invocation gives one summary and one exit status.  Because the notebook
# folder is added through pytest's `testpaths` (not as a positional path),
# giving explicit paths (bash scripts/test.sh tests/test_x.py) runs only those,
# exactly as plain pytest would; other args (-q, -k, -x, ...) apply to both.
#
# Exit status is pytest's, except that "no tests collected" (pytest's 5)
# is reported loudly as a failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export LITELLM_LOCAL_MODEL_COST_MAP=True
# Tests never reach a live model, even when RLM_MODEL is set in the caller's shell.
export RLM_OFFLINE=1
unset RLM_MODEL RLM_SUB_MODEL RLM_API_BASE RLM_CASSETTE RLM_CASSETTE_MODE RLM_SANDBOX RLM_VIEW
bash scripts/setup.sh

VENV="${RLM_VENV:-$ROOT/.venv}"
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"
export JUPYTER_PREFER_ENV_PATH=1

nb_args=()
if [[ -n "$(find example_notebooks -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' -print -quit 2>/dev/null)" ]]; then
    nb_args=(-o "testpaths=tests example_notebooks" --nbval --nbval-current-env --nbval-sanitize-with example_notebooks/sanitize.cfg)
fi

echo "[test] python -m pytest ${nb_args[*]+${nb_args[*]}} $*"
status=0
"$VENV/bin/python" -m pytest ${nb_args[@]+"${nb_args[@]}"} "$@" || status=$?

if [[ $status -eq 5 ]]; then
    echo "[test] ERROR: pytest collected no tests (exit status 5). Treating that as a failure:" >&2
    echo "[test]        check the paths/-k expression given, and that tests/ has test_*.py files." >&2
fi
exit "$status"
