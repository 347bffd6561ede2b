"""One module per ``besa-hw`` command, each exposing ``register(subparsers)``.

Commands share option groups through :mod:`besa_hw.options` and library code through
:mod:`besa_hw.runs`, :mod:`besa_hw.runjob` and :mod:`besa_hw.pipeline`, never through each other.
"""
