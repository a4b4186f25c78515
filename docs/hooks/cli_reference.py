"""mkdocs hook: write the CLI reference from ``edvis.cli.build_parser()`` at every build.

``docs/cli.md`` holds the marker ``<!-- cli-reference -->``; this hook replaces it with one
section per verb (usage, description, a table of every argument and its help), so the page
cannot drift from the code. ``python docs/hooks/cli_reference.py`` prints the generated Markdown.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MARKER = "<!-- cli-reference -->"
PAGE = "cli.md"


def build_parser() -> argparse.ArgumentParser:
    """``edvis.cli.build_parser()`` of this checkout (not of another edvis on the path)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from edvis.cli import build_parser as build

    return build()


def commands(parser: argparse.ArgumentParser, prefix: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(full command, parser) of every leaf command, depth first, in the order they were added."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
        return
    for action in subs:
        for name, sub in action.choices.items():
            yield from commands(sub, f"{prefix} {name}".strip())


def arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The arguments a user types: every action but --help and sub-command dispatchers."""
    return [a for a in parser._actions
            if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]


def undocumented(parser: argparse.ArgumentParser) -> list[str]:
    """Every ``command flag`` whose help text is missing or empty (the reference would show nothing)."""
    missing = []
    for name, sub in commands(parser):
        for a in arguments(sub):
            if a.help is None or a.help == argparse.SUPPRESS or not str(a.help).strip():
                missing.append(f"edvis {name} {'/'.join(a.option_strings) or a.dest}")
    return missing


def _cell(text: str) -> str:
    """Text for a Markdown table cell: HTML-escaped, with Markdown's active characters escaped."""
    text = html.escape(" ".join(str(text).split()), quote=False)
    text = text.replace("{", "&#123;").replace("}", "&#125;")  # never read as an attribute list
    return re.sub(r"([|*_`\[\]\\])", r"\\\1", text)


def _form(a: argparse.Action) -> str:
    """How the argument is written, e.g. ``--out DIR`` or ``--device {auto,cpu,cuda}``."""
    if not a.option_strings:
        return a.metavar or a.dest.upper()
    if a.nargs == 0:
        return ", ".join(a.option_strings)
    if a.choices is not None and a.metavar is None:
        value = "{" + ",".join(str(c) for c in a.choices) + "}"
    else:
        value = a.metavar or a.dest.upper()
    if a.nargs in ("*",):
        value = f"[{value} ...]"
    elif a.nargs in ("+",):
        value = f"{value} [{value} ...]"
    return ", ".join(f"{o} {value}" for o in a.option_strings)


def _help(a: argparse.Action, prog: str) -> str:
    """The help text with argparse's %(default)s-style fields filled in."""
    params: dict[str, Any] = {**vars(a), "prog": prog}
    if params.get("choices") is not None:
        params["choices"] = ", ".join(str(c) for c in params["choices"])
    try:
        return str(a.help) % params
    except (KeyError, TypeError, ValueError):
        return str(a.help)


def reference(parser: argparse.ArgumentParser | None = None) -> str:
    """The Markdown of the CLI reference: a section per command, a table row per argument."""
    parser = parser or build_parser()
    out = []
    for name, sub in commands(parser):
        out.append(f"## `edvis {name}`\n")
        if sub.description:
            out.append(_cell(sub.description) + "\n")
        usage = " ".join(sub.format_usage().split()).removeprefix("usage: ")
        out.append(f"```text\n{usage}\n```\n")
        rows = [(_form(a), "yes" if a.required or not a.option_strings else "", _help(a, sub.prog))
                for a in arguments(sub)]
        if rows:
            out.append("| argument | required | what it does |\n| --- | --- | --- |")
            out.extend(f"| <code>{_cell(form)}</code> | {req} | {_cell(text)} |" for form, req, text in rows)
            out.append("")
    return "\n".join(out)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """mkdocs event: fill the marker of ``cli.md`` with :func:`reference`."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"docs/{PAGE} lacks the marker {MARKER} where the CLI reference goes")
    missing = undocumented(build_parser())
    if missing:
        raise ValueError("arguments without help text, so without a line in the CLI reference: " + ", ".join(missing))
    return markdown.replace(MARKER, reference())


if __name__ == "__main__":
    print(reference())
