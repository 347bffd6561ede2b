"""The commit a report records: dirty when code differs from HEAD, not when only reports/ does (the make
targets regenerate the committed reports one after another)."""

import shutil
import subprocess

import pytest

from besa_hw.provenance import git_commit

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_only_code_changes_make_the_checkout_dirty(tmp_path):
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "r.md").write_text("old\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    head = git_commit(tmp_path)
    assert len(head) == 40
    (tmp_path / "reports" / "r.md").write_text("regenerated\n")
    assert git_commit(tmp_path) == head
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == head + " + uncommitted changes"
