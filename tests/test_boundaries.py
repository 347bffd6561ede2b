"""The package boundary of the house style: the simulator runs on masks alone, without torch."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module,forbidden", [
    ("simulator.sweep", "torch"),
    ("besa_hw.commands.simulate", "torch"),
    ("pruning.sequential", "simpy"),
])
def test_import_does_not_pull(module, forbidden):
    code = f"import sys, {module}; print({forbidden!r} in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_simulate_cli_does_not_import_torch(tmp_path):
    code = ("import sys; from besa_hw.cli import main; "
            f"rc = main(['simulate', '--shape', 'smollm2-135m', '--blocks', '1', '--quiet', '--out', {str(tmp_path)!r}]); "
            "print(rc, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "0 False"
