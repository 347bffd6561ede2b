"""Output folders that never lose a user's data.

Every command that writes a folder (``prune``, ``run``, ``simulate``, ``sweep``, ``compare``)
follows the same two rules:

* **What may be replaced.** A folder that does not exist yet, or an empty one, is always fine.
  An existing folder is replaced only with ``--overwrite``, and only when it is an output of
  this tool: a run folder (``manifest.json`` with a ``format_version``) or a folder carrying the
  ``.besa-hw`` marker that every output folder gets. A user's own folder is never touched.
* **When it is replaced.** The new folder is built beside the old one (a hidden sibling) and
  swapped in only when complete; on any failure or interrupt the sibling is removed and the old
  folder is left exactly as it was.

No torch and no simpy here: the simulator-only commands use it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["MARKER", "check_out_dir", "is_tool_output", "mark", "partial_dir", "staged_dir"]

MARKER = ".besa-hw"  # JSON {"kind": ...}: this folder was written by besa-hw
_LINKED = ("masks.safetensors", "model")  # large, never rewritten in place: hard-linked when staging


def is_tool_output(path: Path) -> bool:
    """True for an empty folder, a run folder (its manifest) or a folder with the marker."""
    if not path.is_dir():
        return False
    if not any(path.iterdir()) or (path / MARKER).is_file():
        return True
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "format_version" in manifest


def check_out_dir(out_dir: str | Path, overwrite: bool = False, reuse: bool = False) -> Path:
    """Check, before any work, that ``out_dir`` may be written; raise ValueError naming the problem.

    ``reuse``: the command continues an existing output folder of this tool (``run --reuse``).
    """
    out = Path(out_dir)
    parent = out.absolute().parent
    for above in (parent, *parent.parents):
        if above.exists():
            if not above.is_dir():
                raise ValueError(f"--out {out}: {above} is a file, not a folder")
            if not os.access(above, os.W_OK | os.X_OK):
                raise ValueError(f"--out {out}: {above} is not writable")
            break
    if not out.exists():
        return out
    if not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if not any(out.iterdir()):
        return out
    if not (overwrite or reuse):
        raise ValueError(f"output folder already exists: {out} (pass --overwrite to replace it)")
    if not is_tool_output(out):
        raise ValueError(f"--out {out} is not empty and not a besa-hw output folder (no manifest.json or "
                         f"{MARKER}); refusing to replace it, choose another folder")
    return out


def partial_dir(out_dir: str | Path) -> Path:
    """Where an unfinished prune into ``out_dir`` keeps its finished blocks (``prune --resume``):
    a hidden sibling, removed once the run folder is published."""
    out = Path(out_dir)
    return out.absolute().parent / f".{out.name}.besa-hw-partial"


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)


def _seed(stage: Path, old: Path) -> None:
    """Fill ``stage`` with a copy of ``old``: big immutable files hard-linked, the rest copied."""
    for item in old.iterdir():
        target = stage / item.name
        if item.name in _LINKED:
            if item.is_dir():
                shutil.copytree(item, target, copy_function=_link_or_copy)
            else:
                _link_or_copy(str(item), str(target))
        elif item.is_dir():
            shutil.copytree(item, target)
        else:
            shutil.copy2(item, target)


@contextlib.contextmanager
def staged_dir(out_dir: str | Path, kind: str, *, overwrite: bool = False, reuse: bool = False) -> Iterator[Path]:
    """Yield a hidden sibling folder to build ``out_dir`` in; swap it into place on success.

    With ``reuse`` the sibling starts as a copy of the existing folder. On any exception
    (KeyboardInterrupt included) the sibling is removed and ``out_dir`` is untouched.
    """
    out = check_out_dir(out_dir, overwrite, reuse)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    except OSError as exc:  # a read-only or forbidden place (/sys/x): one line naming the folder
        raise ValueError(f"cannot create the output folder {out}: {exc.strerror or exc}") from None
    try:
        os.chmod(stage, 0o777 & ~_umask())
        if reuse and out.is_dir():
            _seed(stage, out)
        yield stage
        mark(stage, kind)
        swap_into_place(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def mark(folder: Path, kind: str) -> None:
    """Label ``folder`` as a besa-hw output (so a later --overwrite may replace it)."""
    (Path(folder) / MARKER).write_text(json.dumps({"kind": kind}) + "\n")


def swap_into_place(new: Path, out: Path) -> None:
    """Replace ``out`` (if any) by the complete folder ``new``; the old one is removed last."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(new, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
