"""The documentation: every CLI argument is documented, and the mkdocs site builds strictly."""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edvis.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
HOOK = REPO / "docs" / "hooks" / "cli_reference.py"


def load_hook():
    spec = importlib.util.spec_from_file_location("cli_reference", HOOK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def leaf_helps(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()) -> dict[str, str]:
    """``--help`` text of every leaf command, found by following the sub-commands its help text lists.

    argparse lists sub-commands under their metavar, indented by four spaces (options by two).
    """
    text = parser.format_help()
    names = re.findall(r"^ {4}([a-z][a-z0-9-]*)(?:\s|$)", text, re.MULTILINE)
    if not names:
        return {" ".join(words): text}
    out = {}
    for name in names:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
        out.update(leaf_helps(sub, (*words, name)))
    return out


def test_every_argument_of_every_command_has_help_text():
    assert load_hook().undocumented(build_parser()) == []


def test_an_argument_without_help_is_reported():
    p = argparse.ArgumentParser(prog="edvis")
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("site")
    s.add_argument("--out", help="output folder")
    s.add_argument("--quiet", action="store_true")
    s.add_argument("--seed", help="")
    assert load_hook().undocumented(p) == ["edvis site --quiet", "edvis site --seed"]


def test_the_reference_has_a_section_and_a_row_for_every_command_and_flag():
    helps = leaf_helps(build_parser())
    assert {"synth", "data tiny-imagenet", "train", "export", "render", "analyze", "site"} <= set(helps)
    text = load_hook().reference()
    sections = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    by_command = {s.split("`")[1].removeprefix("edvis "): s for s in sections}
    assert list(by_command) == list(helps)
    for command, help_text in helps.items():
        # argparse starts each argument's line with two spaces, then its option strings
        heads = re.findall(r"^  (-.*?)(?:  |$)", help_text, re.MULTILINE)
        flags = {f for head in heads for f in re.findall(r"--[a-z][a-z0-9-]*", head)} - {"--help"}
        rows = [line for line in by_command[command].splitlines() if line.startswith("| <code>")]
        documented = {f for row in rows for f in re.findall(r"(--[a-z][a-z0-9-]*)", row.split("|")[1])}
        assert flags <= documented, (command, flags - documented)


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                    reason="mkdocs-material is not installed (pip install -e '.[docs]')")
def test_docs_build_strictly_and_fetch_nothing_from_elsewhere(tmp_path):
    out = tmp_path / "docs"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=REPO, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    pages = {p.name for p in out.glob("*.html")}
    assert {"index.html", "cli.html", "tiny-imagenet.html", "training.html", "model.html", "tour.html", "paper.html",
            "hosting.html", "citing.html", "troubleshooting.html", "rendering.html", "analysis.html",
            "perturbations.html"} <= pages
    cli = (out / "cli.html").read_text(encoding="utf-8")
    for flag in ("--train-per-class", "--keep-zip", "--batch-size", "--shard", "--merge", "--pattern-threshold",
                 "--timeline-images"):
        assert f"<code>{flag}" in cli
    for page in out.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"<(?:script|link|img)\b[^>]*\b(?:src|href)=\"(?:https?:)?//", text), page
    assert not (out / "hooks").exists()
