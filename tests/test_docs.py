"""README.md and docs/ stay true: every besa-hw command they show parses (its subcommand's parser
accepts every flag shown), and every relative link resolves."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _commands(page: Path) -> list[str]:
    """The besa-hw command lines of a page's bash blocks (continuation lines joined)."""
    out, in_bash = [], False
    text = page.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if line.startswith("```"):
            in_bash = line.strip() in ("```bash", "```sh")
            continue
        line = line.strip()
        if in_bash and re.match(r"^(\.venv/bin/)?besa-hw ", line):
            out.append(line.split(" #")[0])
    return out


CASES = [(page.relative_to(ROOT).as_posix(), cmd) for page in PAGES for cmd in _commands(page)]


def test_the_pages_show_commands():
    assert len(CASES) > 30 and {p for p, _ in CASES} >= {"README.md", "docs/pruning.md", "docs/codesign.md"}


@pytest.mark.parametrize("page,command", CASES)
def test_every_command_shown_parses(page, command):
    from besa_hw.cli import build_parser

    argv = shlex.split(command)[1:]
    argv = [a for a in argv if a not in ("|",)]
    if "|" in command:
        argv = shlex.split(command.split("|")[0])[1:]
    build_parser().parse_args(argv)  # an unknown flag or a bad choice raises


@pytest.mark.parametrize("page", [p.relative_to(ROOT).as_posix() for p in PAGES])
def test_relative_links_resolve(page):
    path = ROOT / page
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^(https?:|mailto:|#)", target):
            continue
        assert (path.parent / target.split("#")[0]).exists(), f"{page}: broken link {target}"


def test_reference_names_every_hardware_key_and_layer_column():
    import dataclasses

    from simulator.config import HardwareConfig
    from simulator.simulate import LAYER_COLUMNS

    text = (ROOT / "docs" / "reference.md").read_text()
    missing = [f.name for f in dataclasses.fields(HardwareConfig) if f"`{f.name}`" not in text]
    missing += [c for c in LAYER_COLUMNS if f"`{c}`" not in text]
    assert not missing, f"docs/reference.md does not describe {missing}"
