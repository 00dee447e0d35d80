#!/usr/bin/env bash
# Set up the benchmark's dspy.RLM side, apart from the project's own venv:
#   bench/.venv-dspy   dspy==3.4.1 (from PyPI)
#   bench/node_modules Deno (npm package `deno`, pinned in bench/package.json)
#   bench/.deno-dir    Deno's cache, holding Pyodide (npm:pyodide, fetched once from the npm registry)
# After this, the DSPy runs need no network: bench/deno/bin/deno maps DSPy's one
# deno.land import (std@0.186.0/io/mod.ts) to bench/deno/io_mod.ts.
# bench/run.py calls this when something is missing; it is safe to run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv-dspy/bin/python ]; then
  echo "[setup_dspy] creating bench/.venv-dspy with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv .venv-dspy
fi
if ! .venv-dspy/bin/python -c 'import importlib.metadata as m, sys; sys.exit(m.version("dspy") != "3.4.1")' 2>/dev/null; then
  echo "[setup_dspy] installing dspy==3.4.1 into bench/.venv-dspy"
  .venv-dspy/bin/python -m pip install --quiet --disable-pip-version-check "dspy==3.4.1"
fi

if ! ls node_modules/@deno/*/deno >/dev/null 2>&1; then
  echo "[setup_dspy] installing Deno 2.9.6 into bench/node_modules (npm install)"
  # The version is pinned exactly in bench/package.json, and `deno` pins its
  # platform packages exactly.  No lock file: npm 11 writes only this
  # platform's optional binary into one, and `npm ci` then fails elsewhere.
  # The binary comes from the optional dependency @deno/<platform>; the `deno`
  # package's own postinstall script is not needed.
  npm install --no-audit --no-fund --ignore-scripts --no-package-lock
fi

export PATH="$PWD/deno/bin:$PATH" DENO_DIR="$PWD/.deno-dir"
echo "[setup_dspy] $(deno --version | head -1); fetching Pyodide into bench/.deno-dir and checking the sandbox"
.venv-dspy/bin/python - <<'PY'
from dspy.primitives.python_interpreter import PythonInterpreter

with PythonInterpreter() as sandbox:
    out = sandbox("print(6 * 7)")
assert out.strip() == "42", out
print("[setup_dspy] dspy's Deno/Pyodide sandbox works offline:", out.strip())
PY
