"""A check's recommendation as HTML: paragraphs, numbered steps as a list, `commands` as code
a person can copy. The text stays plain in the API and in Markdown; only the page lays it out.
Everything is escaped first: recommendations quote mountpoints, unit names and log lines.
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

_STEP = re.compile(r"^(\d+)\. (.*)$")
_CODE = re.compile(r"`([^`]+)`")


def _inline(text: str) -> str:
    return _CODE.sub(lambda m: f'<code class="cmd">{m.group(1)}</code>', str(escape(text)))


def render(text: str) -> Markup:
    out = []
    for block in text.strip().split("\n\n"):
        lines = block.split("\n")
        steps = [_STEP.match(ln) for ln in lines]
        if any(steps):
            head = [ln for ln, m in zip(lines, steps) if not m]
            if head:
                out.append(f"<p>{_inline(' '.join(head))}</p>")
            items = "".join(f"<li>{_inline(m.group(2))}</li>" for m in steps if m)
            out.append(f"<ol>{items}</ol>")
        else:
            out.append(f"<p>{_inline(' '.join(lines))}</p>")
    return Markup("".join(out))
