"""Command-line entry point: ``besa-hw <command> ...``.

Each subcommand lives in its own module of :mod:`besa_hw.commands` exposing
``register(subparsers)``; the module keeps heavy imports (torch, transformers) inside its
handler so that ``besa-hw simulate`` starts fast (and never imports torch).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys

from besa_hw import __version__

# PyTorch's CUDA caching allocator keeps freed segments for reuse; streaming blocks whose buffers
# change size leaves them fragmented (measured on an H200, bench/RESULTS-gpu.md: 9.00 GB reserved
# for a 7.48 GB peak by Wanda on two LLaMA-7B blocks; 7.72 GB with expandable segments). Read
# when CUDA first allocates; a user's own setting wins.
CUDA_ALLOC_CONF = "expandable_segments:True"

# Order is the order shown in --help.
_COMMAND_MODULES = (
    "besa_hw.commands.run",
    "besa_hw.commands.prune",
    "besa_hw.commands.eval",
    "besa_hw.commands.simulate",
    "besa_hw.commands.latency_table",
    "besa_hw.commands.sweep",
    "besa_hw.commands.compare",
    "besa_hw.commands.estimate",
    "besa_hw.commands.make_model",
)


class CliError(Exception):
    """A problem with the user's input; printed as one line, exit status 2."""


class _UsageError(Exception):
    """A command line argparse rejects (unknown flag, bad int, bad choice)."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one error line (the usage stays in --help)."""

    def error(self, message: str):  # type: ignore[override]
        raise _UsageError(self.prog, message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="besa-hw",
        description="Prune LLaMA-family models with BESA and simulate them on a sparse accelerator.",
    )
    parser.add_argument("--version", action="version", version=f"besa-hw {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", CUDA_ALLOC_CONF)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(f"{exc.prog}: error: {exc} (see {exc.prog} --help)", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    previous = _terminate_as_interrupt()
    try:
        return int(args.func(args) or 0)
    except (CliError, ValueError, FileNotFoundError, NotADirectoryError, KeyError) as exc:
        if args.debug or os.environ.get("BESA_HW_DEBUG"):
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"besa-hw {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"besa-hw {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`besa-hw simulate ... | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
    if os.getpid() != _MAIN_PID:  # a forked worker (datasets, lm-eval, a pool) ended by its parent: no traceback
        os._exit(128 + signum)
    raise KeyboardInterrupt


_MAIN_PID = os.getpid()


def _terminate_as_interrupt():
    """SIGTERM (kill, a job scheduler's timeout) unwinds like Ctrl-C, so half-built output folders
    are removed and the previous ones kept; returns the old handler (None off the main thread)."""
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    try:
        return signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread: leave signals alone
        return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
