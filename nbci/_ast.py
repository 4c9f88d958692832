"""Parsing Python source the way every stage needs it: one retry for CPython's shared AST state.

CPython 3.11 keeps the AST constructor's recursion depth in state that all threads share,
and an error path leaves it off (python/cpython#106905): a parse racing with another one,
such as a traceback formatted in a logging thread, can fail with `SystemError: AST
constructor recursion depth mismatch` although the code is fine. The next parse starts
from a reset depth, so one retry gives the real answer.
"""

from __future__ import annotations

import ast


def parse_source(code: str) -> ast.Module:
    """`ast.parse(code)`; raises SyntaxError or ValueError for code that does not parse."""
    try:
        return ast.parse(code)
    except SystemError:
        return ast.parse(code)
