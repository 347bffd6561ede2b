"""What produced a result: the command line, Python and package versions, the git commit."""

from __future__ import annotations

import importlib.metadata
import platform
import shlex
import subprocess
import sys
from pathlib import Path

__all__ = ["PACKAGES", "command_line", "versions", "git_commit", "environment"]

PACKAGES = ("besa-hw", "numpy", "simpy", "torch", "transformers")
SOURCE_DIR = Path(__file__).resolve().parents[1]


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed (``sys.argv``, program name shortened to ``besa-hw`` when it is the CLI)."""
    argv = list(sys.argv if argv is None else argv)
    if argv and Path(argv[0]).name in ("besa-hw", "cli.py"):
        argv[0] = "besa-hw"
    return shlex.join(argv)


def versions() -> dict[str, str]:
    """Python and package versions, read from the installed metadata (nothing is imported)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name.replace("-", "_")] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name.replace("-", "_")] = "not installed"
    return out


def git_commit(source: Path = SOURCE_DIR) -> str:
    """HEAD of the checkout the code runs from, "+ uncommitted changes" when a tracked file outside reports/
    differs from it, or "not a git checkout"."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        # reports/ holds the committed outputs that the make targets regenerate one after another: not code
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!reports")
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    return commit + (" + uncommitted changes" if dirty else "")


def environment(argv: list[str] | None = None) -> dict:
    """Command line, versions and git commit, as recorded in a manifest or a report."""
    return {"command": command_line(argv), "versions": versions(), "git_commit": git_commit()}
