"""A griffe extension for the docs build (mkdocs.yml loads it by path).

The docstrings carry doctests (run by tests/test_docs.py) in their prose as
well as in ``Example:`` sections.  Markdown would render the prose ones as
text, and read their output (``['a', 'b']`` above ``[...]``) as
cross-reference links, which ``mkdocs build --strict`` rejects.  This wraps
each such run of ``>>>`` lines and their output in a ``pycon`` code fence,
and drops the ``# doctest:`` flags.  ``Examples:`` sections are left to griffe,
which already renders them as code.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

PROMPT = re.compile(r"^(\s*)>>> ?")
SECTION = re.compile(r"^(\s*)Examples:\s*$")  # griffe parses these; "Example:" it does not
FENCE = re.compile(r"^\s*(```|~~~)")
FLAGS = re.compile(r"\s*# doctest:.*$")


def fence_doctests(text: str) -> str:
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    in_fence = False
    section_indent: int | None = None
    while i < len(lines):
        line = lines[i]
        indent = len(line) - len(line.lstrip())
        if section_indent is not None and line.strip() and indent <= section_indent \
                and not SECTION.match(line):
            section_indent = None
        if FENCE.match(line):
            in_fence = not in_fence
        m = SECTION.match(line)
        if m and not in_fence:
            section_indent = len(m.group(1))
        p = PROMPT.match(line)
        if p and not in_fence and section_indent is None:
            pad = p.group(1)
            block = []
            while i < len(lines) and lines[i].strip() and lines[i].startswith(pad):
                block.append(FLAGS.sub("", lines[i][len(pad):]))
                i += 1
            out += [f"{pad}```pycon", *(pad + b for b in block), f"{pad}```"]
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


class DoctestsAsCode(griffe.Extension):
    def on_object(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
