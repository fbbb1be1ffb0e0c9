"""A Griffe extension for the API pages (``extensions:`` of the mkdocstrings handler).

The package's docstrings are Google style with Sphinx roles for names
(:func:`~mongeflow.metrics.energy_distance`, :class:`Problem`). Markdown has no such roles:
this turns each into the name as code, linked to its entry when the API pages document it
(names written relative to their docstring's module are resolved in that module's scope).

It also keeps Markdown from reading two adjacent bracketed terms of a formula
(``φ(x) = ... [+ aᵀx] [+ ½ xᵀ Q x]``) as a reference link; ``[title][dotted.name]`` stays a
cross-reference.
"""

from __future__ import annotations

import html
import re

import griffe

_ROLE = re.compile(r":(?:func|class|data|meth|mod|attr|exc|obj):`(~?)([^`]+)`")
_CODE = re.compile(r"(`+).+?\1")
_ADJACENT = re.compile(r"\](\s?)\[(?![\w.]*\])")  # not [title][identifier]


def _identifier(obj: griffe.Object, name: str) -> str:
    """The full path of ``name`` as written in ``obj``'s docstring, when it can be found."""
    first, _, rest = name.partition(".")
    try:
        resolved = obj.resolve(first)
    except (griffe.NameResolutionError, KeyError, ValueError, AttributeError):
        return name
    return f"{resolved}.{rest}" if rest else resolved


def _role(obj: griffe.Object, match: re.Match) -> str:
    short, written = match.group(1), match.group(2).strip()
    name = written.removesuffix("()")
    text = (name.rsplit(".", 1)[-1] if short else name) + written[len(name) :]
    identifier = html.escape(_identifier(obj, name), quote=True)
    return f'<autoref identifier="{identifier}" optional><code>{html.escape(text)}</code></autoref>'


def _outside_code(line: str, change) -> str:
    """``change`` applied to the parts of a line that are not inline code."""
    out, last = [], 0
    for code in _CODE.finditer(line):
        out += [change(line[last : code.start()]), code.group(0)]
        last = code.end()
    return "".join([*out, change(line[last:])])


def rewrite(obj: griffe.Object, text: str) -> str:
    lines, doctest = [], False
    for line in text.split("\n"):
        stripped = line.strip()
        doctest = stripped.startswith(">>>") or (doctest and bool(stripped))
        if not doctest:
            line = _outside_code(line, lambda part: _ADJACENT.sub(r"]\1\\[", part))
            line = _ROLE.sub(lambda m: _role(obj, m), line)
        lines.append(line)
    return "\n".join(lines)


def _objects(obj: griffe.Object):
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = rewrite(obj, obj.docstring.value)
