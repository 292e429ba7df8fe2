"""`{{key}}` parameters: the shell never parses a value.

Each `{{key}}` in the saved script becomes `${DIAG_P_key+"${DIAG_P_key}"}` and the values
travel beside the script, as environment variables of the run (to agents too, in the
task's `env`). Pasting quoted values into the text cannot be made safe: that needs the
exact quoting context of every placeholder, and a scanner that guesses bash's grammar
disagrees with bash somewhere (issue 15: `$(#'`, `$(...)#'`, a `case x)` in `"$(...)"`,
`(( ))`). An expansion's result is never parsed again as shell code, in any context.
The `${V+"${V}"}` form is one quoted word both unquoted and inside "double quotes"
(in bash and dash alike), so a misjudged context cannot word-split a value into extra
arguments either.

What remains is where bash evaluates text as arithmetic or code after expansion: in
`(( ))`, `$(( ))`, `$[ ]`, `let`, `[[ -eq ]]` and `eval` a value such as `a[$(cmd)]`
runs `cmd`, from a variable as much as from the text. A placeholder textually inside such
a construct is refused, by plain text matching that does not care about quotes (so it
cannot be fooled the way a scanner is; it may refuse a harmless template). A script that
copies a parameter into a variable and later does arithmetic on it must check it is a
number first (`case $n in ''|*[!0-9]*) exit 2;; esac`), as with any untrusted input.

Python and Perl scripts (RunPythonScript, RunPerlScript) take the same `{{key}}`, as an
expression that reads the variable: `__import__('os').environ['DIAG_P_key']` in Python,
`$ENV{DIAG_P_key}` in Perl (which also interpolates inside "double quotes"). The value is
never in the text there either. A placeholder inside a Python string literal or comment is
refused (the tokenizer finds them), since there it would be text, not the value.

The scanner below is now only a lint: it refuses placeholders where the expansion would
not happen (single quotes, `$'...'`, comments, here-documents) or is hard to read
(backticks, `${...}`). If it misjudges a context, the result is a refusal or literal text,
never code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PLACEHOLDER = re.compile(r"\{\{\s*(diag::[A-Za-z]+|[A-Za-z0-9_-]{1,64})\s*\}\}")
BUILTINS = ("diag::InstanceId", "diag::InvokeId", "diag::CommandId")
MAX_PARAMETERS = 20
_WORD_BREAK = set(" \t\n;&|()<>")
_WHERE = {"comment": "a comment", "heredoc": "a here-document", "bq": "backticks", "brace": "${...}",
          "arith": "$((...))", "ansi": "$'...'", "sq": "single quotes"}
BUILTIN_ENV = {"diag::InstanceId": "DIAG_INSTANCE_ID", "diag::InvokeId": "DIAG_INVOKE_ID",
               "diag::CommandId": "DIAG_COMMAND_ID"}
ENV_NAME = re.compile(r"^DIAG_[A-Za-z0-9_]+$")
# Text that opens an arithmetic (or eval) reading of what follows, and what closes it; None:
# to the end of the line. Plain text matching on purpose: quotes do not hide a construct.
_EVALUATING = ((re.compile(r"\(\("), "))"), (re.compile(r"\$\["), "]"),
               (re.compile(r"(?:^|[\s;&|(`{!])(?:let|eval)(?=[\s;&|)`}]|$)", re.M), None),
               (re.compile(r"\[\[(?:(?!\]\]).)*?-(?:eq|ne|lt|le|gt|ge)\b", re.S), "]]"))


class ParameterError(ValueError):
    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.message, self.field = message, field


@dataclass(frozen=True)
class Placeholder:
    start: int
    end: int
    name: str
    context: str  # "sh" (unquoted) or "dq"; a lint's guess, never relied on for safety


def scan(content: str) -> list[Placeholder]:
    """Every placeholder with its quoting context; ParameterError for one that cannot be made safe."""
    out: list[Placeholder] = []
    stack: list[list] = [["sh", 0]]  # [context, paren depth] - depth only matters for $( ) frames
    pending: list[str] = []  # here-document delimiters waiting for the end of the line
    word_start, i, n = True, 0, len(content)
    while i < n:
        ctx = stack[-1][0]
        if ctx == "heredoc":
            eol = content.find("\n", i)
            eol = n if eol < 0 else eol
            line = content[i:eol]
            if line.lstrip("\t") == stack[-1][1]:
                stack.pop()
            elif PLACEHOLDER.search(line):
                _refuse(PLACEHOLDER.search(line).group(1), "heredoc")
            i = eol + 1
            continue
        m = PLACEHOLDER.match(content, i) if content.startswith("{{", i) else None
        if m:
            if ctx not in ("sh", "sub", "dq"):
                _refuse(m.group(1), ctx)
            out.append(Placeholder(m.start(), m.end(), m.group(1), "sh" if ctx == "sub" else ctx))
            i, word_start = m.end(), False
            continue
        c = content[i]
        if ctx in ("sq", "ansi"):
            if ctx == "ansi" and c == "\\":
                i += 2
                continue
            if c == "'":
                stack.pop()
            i += 1
            continue
        if ctx == "comment":
            if c == "\n":
                stack.pop()
                continue  # the newline itself is handled in the enclosing context
            i += 1
            continue
        if c == "\\":
            i, word_start = i + 2, False
            continue
        if ctx == "dq":
            i += _open_expansion(content, i, stack) or (1 if c != '"' else _pop(stack))
            continue
        if ctx in ("bq", "brace", "arith"):
            closing = {"bq": "`", "brace": "}", "arith": ")"}[ctx]
            if ctx == "arith" and c == "(":
                stack[-1][1] += 1
            elif c == closing:
                if ctx == "arith" and stack[-1][1] > 0:
                    stack[-1][1] -= 1
                else:
                    stack.pop()
                    if ctx == "arith":
                        i += 1  # the second ) of ))
            i += 1
            continue
        # unquoted shell text: the top level or inside $( )
        step = _open_expansion(content, i, stack)
        if step:
            i, word_start = i + step, False
            continue
        if c == "#" and word_start:
            stack.append(["comment", 0])
        elif c == "'":
            stack.append(["sq", 0])
        elif c == '"':
            stack.append(["dq", 0])
        elif c == "(" and ctx == "sub":
            stack[-1][1] += 1
        elif c == ")" and ctx == "sub":
            if stack[-1][1] == 0:
                stack.pop()
            else:
                stack[-1][1] -= 1
        elif c == "<" and content.startswith("<<", i) and not content.startswith("<<<", i):
            i = _heredoc_word(content, i + 2, pending)
            word_start = False
            continue
        elif c == "\n" and pending:
            stack.extend(["heredoc", d] for d in reversed(pending))
            pending.clear()
        word_start = c in _WORD_BREAK
        i += 1
    return out


def _pop(stack: list[list]) -> int:
    stack.pop()
    return 1


def _open_expansion(s: str, i: int, stack: list[list]) -> int:
    """Push the context an expansion opens at i; the characters consumed, 0 if none."""
    if s.startswith("$((", i):
        stack.append(["arith", 0])
        return 3
    if s.startswith("$(", i):
        stack.append(["sub", 0])
        return 2
    if s.startswith("${", i):
        stack.append(["brace", 0])
        return 2
    if s.startswith("$'", i) and stack[-1][0] != "dq":
        stack.append(["ansi", 0])
        return 2
    if s[i] == "`":
        stack.append(["bq", 0])
        return 1
    return 0


def _heredoc_word(s: str, i: int, pending: list[str]) -> int:
    if i < len(s) and s[i] == "-":
        i += 1
    while i < len(s) and s[i] in " \t":
        i += 1
    j = i
    while j < len(s) and s[j] not in _WORD_BREAK:
        j += 1
    word = s[i:j].replace("'", "").replace('"', "").replace("\\", "")
    if word:
        pending.append(word)
    return j


def _refuse(name: str, ctx: str) -> None:
    raise ParameterError(f"{{{{{name}}}}} stands inside {_WHERE.get(ctx, ctx)}, where it would not expand as a "
                         "value; assign it to a variable first (v={{" + name + "}}) and use \"$v\"", "content")


def _refuse_evaluating(content: str) -> None:
    """Placeholders inside text that bash evaluates as arithmetic or code after expansion."""
    for opener, closer in _EVALUATING:
        for m in opener.finditer(content):
            end = content.find(closer, m.end()) if closer else content.find("\n", m.end())
            span = content[m.start():len(content) if end < 0 else end]
            found = PLACEHOLDER.search(span)
            if found:
                raise ParameterError(
                    f"{{{{{found.group(1)}}}}} stands where bash evaluates it as arithmetic or code "
                    f"({m.group(0).strip()} ...): a value such as a[$(cmd)] would run cmd. Copy it to a variable "
                    "(n={{" + found.group(1) + "}}), check it is a number (case $n in ''|*[!0-9]*) exit 2;; esac), "
                    "then use $n", "content")


SHELL, PYTHON, PERL = "RunShellScript", "RunPythonScript", "RunPerlScript"


def _placeholders(content: str, kind: str) -> list[Placeholder]:
    if kind == SHELL:
        return scan(content)
    if kind == PYTHON:
        _python_lint(content)
    return [Placeholder(m.start(), m.end(), m.group(1), kind) for m in PLACEHOLDER.finditer(content)]


def _python_lint(content: str) -> None:
    """Refuse a placeholder inside a Python string literal or comment; a script the tokenizer
    cannot read is left to Python, which reports it when the script runs."""
    import io
    import tokenize

    starts = [0]
    for line in content.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))

    def offset(pos: tuple[int, int]) -> int:
        return starts[pos[0] - 1] + pos[1]

    spans: list[tuple[int, int, str]] = []
    fstring = getattr(tokenize, "FSTRING_START", None)  # 3.12: an f-string is several tokens
    depth, opened = 0, 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(content).readline):
            if tok.type in (tokenize.STRING, tokenize.COMMENT) and not depth:
                spans.append((offset(tok.start), offset(tok.end), "a comment" if tok.type == tokenize.COMMENT
                              else "a string literal"))
            elif fstring is not None and tok.type == fstring:
                depth, opened = depth + 1, offset(tok.start) if not depth else opened
            elif fstring is not None and tok.type == tokenize.FSTRING_END:
                depth -= 1
                if not depth:
                    spans.append((opened, offset(tok.end), "a string literal"))
    except (tokenize.TokenError, SyntaxError):
        return
    for m in PLACEHOLDER.finditer(content):
        for start, end, where in spans:
            if start <= m.start() < end:
                raise ParameterError(f"{{{{{m.group(1)}}}}} stands inside {where}, where it would be text, not the "
                                     "value; in Python it is an expression: name = {{" + m.group(1) + "}}", "content")


def names(content: str, kind: str = SHELL) -> list[str]:
    """The custom parameter names, in order of first use; refuses unknown built-ins and too many."""
    seen: dict[str, None] = {}
    if kind == SHELL:
        _refuse_evaluating(content)
    for p in _placeholders(content, kind):
        if p.name.startswith("diag::"):
            if p.name not in BUILTINS:
                raise ParameterError(f"unknown built-in parameter {p.name}; known: {', '.join(BUILTINS)}", "content")
            continue
        seen[p.name] = None
    if len(seen) > MAX_PARAMETERS:
        raise ParameterError(f"{len(seen)} parameters; at most {MAX_PARAMETERS}", "content")
    return list(seen)


def check_values(wanted: list[str], values: object) -> dict[str, str]:
    """The invocation's values: exactly the command's parameters, each a string."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ParameterError("must be an object of parameter names to string values", "parameters")
    for key, v in values.items():
        if key not in wanted:
            raise ParameterError(f"the command has no parameter {key!r} (it has {', '.join(wanted) or 'none'})",
                                 f"parameters.{key}")
        if not isinstance(v, str) or len(v) > 4096 or "\x00" in v:
            raise ParameterError("must be a string of at most 4096 characters, without NUL", f"parameters.{key}")
    for key in wanted:
        if key not in values:
            raise ParameterError(f"missing a value for {{{{{key}}}}}", f"parameters.{key}")
    return dict(values)


def env_name(name: str) -> str:
    """The variable that carries a parameter: DIAG_P_<key>, or DIAG_PH_<hex> for a key with
    '-' (not valid in a shell name); the prefixes differ, so no two keys share a variable."""
    if name in BUILTIN_ENV:
        return BUILTIN_ENV[name]
    if re.fullmatch(r"[A-Za-z0-9_]+", name):
        return f"DIAG_P_{name}"
    return "DIAG_PH_" + name.encode().hex()


def substitute(content: str, values: dict[str, str], builtins: dict[str, str],
               kind: str = SHELL) -> tuple[str, dict[str, str]]:
    """The script to save and the environment to run it with: each placeholder becomes an
    expansion of its variable; the values go only into the environment."""
    parts, env, last = [], {}, 0
    for p in _placeholders(content, kind):
        var = env_name(p.name)
        env[var] = builtins[p.name] if p.name.startswith("diag::") else values[p.name]
        parts.append(content[last:p.start])
        parts.append(f"__import__('os').environ['{var}']" if kind == PYTHON else
                     f"$ENV{{{var}}}" if kind == PERL else f'${{{var}+"${{{var}}}"}}')
        last = p.end
    parts.append(content[last:])
    return "".join(parts), env
