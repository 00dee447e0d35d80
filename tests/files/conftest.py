"""tests/files/ holds notebooks that tests open themselves; they are not nbval tests.

scripts/test.sh runs nbval over the test paths, which would otherwise collect
these notebooks (live_view.ipynb needs the scripted server and JupyterLab
that tests/browser/test_live_view.py starts).
"""

collect_ignore_glob = ["*.ipynb"]
