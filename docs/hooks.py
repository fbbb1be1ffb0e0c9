"""The documentation's build-time pieces: an MkDocs hook (``hooks:`` in ``mkdocs.yml``).

- ``cli.md``, the command-line reference, written from the parser itself
  (``mongeflow.cli._parser()``: the program's and every subcommand's ``--help``), so that
  it shows the flags, defaults and help of the registered schemes and divergences of the
  code being documented;
- the committed figures (``benchmarks/**/*.png``, ``examples/*.png``) and
  ``benchmarks/README.md`` put into the site at their paths in the repository, read
  where they lie (nothing is copied into ``docs/``);
- ``<!-- readme KIND "TEXT" -->`` in a page is replaced by that passage of ``README.md``
  (see ``_readme_passage``), so that the numbers the pages show are the README's own.

A passage, a figure or a subcommand that cannot be found stops the build with its name.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ("benchmarks/**/*.png", "examples/*.png")
PAGES = {"benchmarks/README.md": "benchmarks/measurements.md"}
HELP_COLUMNS = "100"  # the width of the --help texts, whatever the terminal


# --- the command-line reference --------------------------------------------------------


def _subcommands(parser):
    """The subcommands' parsers, by name, in the parser's order."""
    import argparse

    for action in parser._actions:  # argparse keeps them there and nowhere public
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise PluginError("docs/hooks.py: mongeflow.cli._parser() has no subcommands")


@contextlib.contextmanager
def _columns(width: str):
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = width
    try:
        yield
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def cli_reference() -> str:
    """The text of ``cli.md``."""
    if str(ROOT / "src") not in sys.path:
        sys.path.insert(0, str(ROOT / "src"))  # the code of this checkout, installed or not
    from mongeflow import cli

    with _columns(HELP_COLUMNS):
        parser = cli._parser()
        commands = _subcommands(parser)
        parts = [
            "# Command-line reference",
            "",
            "Every `mongeflow` command and option, as `--help` prints them. This page is "
            "written from the program's own parser each time the documentation is built: "
            "the scheme and divergence settings below are those of the registered schemes "
            "and divergences, with their defaults.",
            "",
            "```text",
            parser.format_help().rstrip(),
            "```",
        ]
        for name, sub in commands.items():
            parts += ["", f"## mongeflow {name}", "", "```text", sub.format_help().rstrip(), "```"]
    return "\n".join(parts) + "\n"


# --- passages of README.md ---------------------------------------------------------------

_DIRECTIVE = re.compile(r"^<!--[ \t]*readme[ \t]+(.*?)[ \t]*-->[ \t]*$", re.MULTILINE)
_FENCE = re.compile(r"^(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s")


def _outside_fences(lines: list[str]) -> list[bool]:
    """For each line, whether it lies outside fenced code (fences count as inside)."""
    inside, flags = False, []
    for line in lines:
        if _FENCE.match(line):
            flags.append(False)
            inside = not inside
        else:
            flags.append(not inside)
    return flags


def _one(found: list[int], kind: str, text: str) -> int:
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise PluginError(f"README.md has {what} {kind} matching {text!r} (docs/hooks.py)")
    return found[0]


def _readme_passage(kind: str, text: str, rows: str | None = None) -> str:
    """The passage of README.md that a directive names.

    - ``section "## HEADING"``: what follows the heading (that exact line) up to the next
      heading of the same or a higher level;
    - ``table "TEXT"``: the table whose header line contains TEXT; with ``rows "ROW"``, its
      header and the rows that contain ROW;
    - ``block "TEXT"``: the fenced code block that contains TEXT;
    - ``paragraph "TEXT"``: the paragraph (outside code) that contains TEXT.
    """
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    outside = _outside_fences(lines)
    if kind == "section":
        start = _one(
            [i for i, s in enumerate(lines) if outside[i] and s.strip() == text], "heading", text
        )
        level = len(_HEADING.match(text).group(1)) if _HEADING.match(text) else 6
        end = start + 1
        while end < len(lines):
            heading = _HEADING.match(lines[end]) if outside[end] else None
            if heading and len(heading.group(1)) <= level:
                break
            end += 1
        chosen = lines[start + 1 : end]
    elif kind == "table":
        header = _one(
            [
                i
                for i, s in enumerate(lines)
                if outside[i]
                and s.startswith("|")
                and text in s
                and (i == 0 or not lines[i - 1].startswith("|"))
            ],
            "table header",
            text,
        )
        end = header
        while end < len(lines) and lines[end].startswith("|"):
            end += 1
        chosen = lines[header:end]
        if rows is not None:
            body = [s for s in chosen[2:] if rows in s]
            if not body:
                raise PluginError(f"README.md's table {text!r} has no row with {rows!r}")
            chosen = chosen[:2] + body
    elif kind == "block":
        hit = _one(
            [
                i
                for i, s in enumerate(lines)
                if not outside[i] and text in s and not _FENCE.match(s)
            ],
            "code line",
            text,
        )
        start, end = hit, hit
        while not _FENCE.match(lines[start]):
            start -= 1
        while not _FENCE.match(lines[end]):
            end += 1
        chosen = lines[start : end + 1]
    elif kind == "paragraph":
        hit = _one([i for i, s in enumerate(lines) if outside[i] and text in s], "paragraph", text)
        start, end = hit, hit + 1
        while start > 0 and lines[start - 1].strip() and outside[start - 1]:
            start -= 1
        while end < len(lines) and lines[end].strip() and outside[end]:
            end += 1
        chosen = lines[start:end]
    else:
        raise PluginError(f"docs/hooks.py: unknown README passage kind {kind!r}")
    return "\n".join(chosen).strip("\n")


def _expand(match: re.Match) -> str:
    words = shlex.split(match.group(1))
    if len(words) == 2:
        return _readme_passage(words[0], words[1])
    if len(words) == 4 and words[2] == "rows":
        return _readme_passage(words[0], words[1], rows=words[3])
    raise PluginError(f"docs/hooks.py: cannot read the directive {match.group(0)!r}")


# --- the hook's events -------------------------------------------------------------------


def on_files(files, config):
    """Add ``cli.md``, the committed figures and ``benchmarks/README.md`` to the site."""
    files.append(File.generated(config, "cli.md", content=cli_reference()))
    for pattern in FIGURES:
        for path in sorted(ROOT.glob(pattern)):
            uri = path.relative_to(ROOT).as_posix()
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    for source, uri in PAGES.items():
        path = ROOT / source
        if not path.is_file():
            raise PluginError(f"docs/hooks.py: {source} is missing")
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown, page, config, files):
    """Replace each ``<!-- readme KIND "TEXT" -->`` by its passage of README.md."""
    return _DIRECTIVE.sub(_expand, markdown)
