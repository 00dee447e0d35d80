"""Runs inside the child kernel: the REPL side of an rlm_magic run.

It is importable by any Python 3.9+ interpreter with only the standard library
(pandas/pyarrow/numpy are used only when a value needs them), because a
``kernel=`` spec may point at an interpreter where rlm_magic is not installed;
the parent puts this folder on ``sys.path`` before importing it.  It never
imports ``rlm_magic``.
"""

from __future__ import annotations

from .runtime import install

__all__ = ["install"]
