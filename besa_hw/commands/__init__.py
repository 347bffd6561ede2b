"""One module per ``besa-hw`` command, each exposing ``register(subparsers)``.

Commands share option groups through :mod:`besa_hw.options` and library code through
:mod:`besa_hw.runs` (the prune pipeline), :mod:`besa_hw.runfolder` (reading run folders),
:mod:`besa_hw.evaluation` and :mod:`besa_hw.pipeline` (simulation), never through each other.
"""
