import importlib.metadata
import importlib.util
from pathlib import Path

import pytest
import torch


def _refuse_the_uncompiled_checkout():
    """`python -m pytest` puts the checkout first on sys.path: after a
    non-editable install it would test ./pysnn, which has no compiled _C, and
    compile the kernels again instead of testing the installed build."""
    checkout = Path(__file__).resolve().parent.parent / "pysnn"
    if Path(importlib.util.find_spec("pysnn").origin).parent != checkout or any(checkout.glob("_C*.so")):
        return
    try:
        installed = Path(importlib.metadata.distribution("pysnn").locate_file("pysnn"))
    except importlib.metadata.PackageNotFoundError:
        return
    if installed.resolve() != checkout and (installed / "__init__.py").is_file():
        pytest.exit(
            f"the tests would import the uncompiled checkout {checkout}, not the pysnn built "
            f"into {installed}: run `make test` (editable build), or `pytest` instead of "
            "`python -m pytest`",
            returncode=2,
        )


_refuse_the_uncompiled_checkout()
import pysnn  # noqa: E402,F401  (registers torch.ops.pysnn.*)

CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="no CUDA device"))]


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _hypothesis_profiles():
    """ "ci": a fixed seed and 200 examples per property test (the default);
    "deep": PYSNN_HYPOTHESIS_PROFILE=deep, 5000 examples, a fresh seed each run."""
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:
        return
    common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    settings.register_profile("ci", max_examples=200, derandomize=True, database=None, print_blob=True, **common)
    settings.register_profile("deep", max_examples=5000, print_blob=True, **common)
    import os

    settings.load_profile(os.environ.get("PYSNN_HYPOTHESIS_PROFILE", "ci"))


_hypothesis_profiles()
