"""Parse a query with promql-parser, within bounds a query from anyone can be held to.

The parser is quick on what people write, but a query with thousands of nested brackets or
chained operators took it seconds (4,000 `x+` in a row: 15 s; parentheses grow worse and
100,000 of them crashed the process), and the evaluator recurses once per level of the
tree. So the text is measured before it is parsed, and the tree after: bounds far beyond
any dashboard's query, each refused as `bad_data`.
"""

from __future__ import annotations

import re

import promql_parser as pp

from diag.promql.errors import BadData

MAX_LENGTH = 16_384
MAX_NESTING = 64  # (, [ and { open at once
MAX_OPERATORS = 256  # operator characters and keywords outside strings
MAX_DEPTH = 128  # of the parsed tree
_OPERATOR_CHARS = frozenset("+-*/%^=!<>")
_KEYWORDS = re.compile(r"\b(?:and|or|unless|atan2)\b")


def _outside_strings(text: str) -> str:
    """The query with its string literals ("...", '...' with escapes, `...` raw) blanked."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'`":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if c != "`" and text[j] == "\\" else 1
            out.append(" ")
            i = j + 1
            continue
        if c == "#":  # a comment runs to the end of its line
            while i < n and text[i] != "\n":
                i += 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _check_text(text: str) -> None:
    if len(text) > MAX_LENGTH:
        raise BadData(f"invalid parameter \"query\": longer than {MAX_LENGTH} characters")
    bare = _outside_strings(text)
    depth = deepest = 0
    for c in bare:
        if c in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in ")]}":
            depth -= 1
    if deepest > MAX_NESTING:
        raise BadData(f"invalid parameter \"query\": brackets nested deeper than {MAX_NESTING}")
    operators = sum(c in _OPERATOR_CHARS for c in bare) + len(_KEYWORDS.findall(bare))
    if operators > MAX_OPERATORS:
        raise BadData(f"invalid parameter \"query\": more than {MAX_OPERATORS} operators")


_CHILDREN = ("expr", "lhs", "rhs", "param", "vector_selector")


def tree_depth(expr) -> int:
    """Depth of the tree, without recursion."""
    deepest = 0
    stack = [(expr, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        for name in _CHILDREN:
            child = getattr(node, name, None)
            if isinstance(child, pp.Expr):
                stack.append((child, d + 1))
        if isinstance(node, pp.Call):
            stack.extend((a, d + 1) for a in node.args if isinstance(a, pp.Expr))
    return deepest


def parse(text: str) -> pp.Expr:
    """The parsed expression, or BadData with Prometheus' "parse error" wording."""
    if not text.strip():
        raise BadData("invalid parameter \"query\": unknown position: parse error: no expression found in input")
    _check_text(text)
    try:
        expr = pp.parse(text)
    except Exception as e:  # ValueError from the parser; anything else it may raise on odd input
        raise BadData(f"invalid parameter \"query\": parse error: {e}") from None
    except BaseException as e:  # a panic inside the Rust parser surfaces as PanicException
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise BadData(f"invalid parameter \"query\": parse error: {e}") from None
    if tree_depth(expr) > MAX_DEPTH:
        raise BadData(f"invalid parameter \"query\": expression nested deeper than {MAX_DEPTH}")
    return expr
