"""Work-arounds for defects of the Python and libraries labeler runs on, each with its source.

**Concurrent AST construction** (CPython issue gh-106905, and the 3.11/3.12 AST state
shared by every thread of an interpreter): two threads turning source into an AST at
the same moment can raise ``SystemError: AST constructor recursion depth mismatch``.
numpy parses every ``.npy`` header with :func:`ast.literal_eval`
(``numpy.lib.format``), and the dashboard loads arrays from several request threads,
so one such load in about a thousand concurrent ones failed in
``tests/test_integrity.py::test_reads_racing_rewrites_never_see_damage`` (Python 3.11.7,
numpy 2.4). :func:`serialise_literal_eval` puts :func:`ast.literal_eval` behind one lock
(headers are a few hundred bytes: microseconds of waiting) on Pythons before 3.13.
"""

from __future__ import annotations

import ast
import functools
import sys
import threading

__all__ = ["serialise_literal_eval"]

_LOCK = threading.Lock()


def serialise_literal_eval() -> bool:
    """Wrap :func:`ast.literal_eval` in a process-wide lock (idempotent).

    Returns
    -------
    bool
        True when the wrapper is in place (Python < 3.13), False when not needed.
    """
    if sys.version_info >= (3, 13):
        return False
    if getattr(ast.literal_eval, "_labeler_serialised", False):
        return True
    original = ast.literal_eval

    @functools.wraps(original)
    def literal_eval(node_or_string):
        with _LOCK:
            return original(node_or_string)

    literal_eval._labeler_serialised = True
    ast.literal_eval = literal_eval
    return True
