"""The README's "use it in your own code" example runs and learns."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_hsic_own_layer_example_increases_label_dependence():
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "hsic_own_layer.py")],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    hsic_zy = [float(v) for v in re.findall(r"HSIC\(Z, Y\) ([0-9.]+)", out)]
    assert len(hsic_zy) == 5
    assert hsic_zy[-1] > 2 * hsic_zy[0], out
