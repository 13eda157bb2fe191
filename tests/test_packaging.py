"""The distribution's metadata and the torch version check."""

from pathlib import Path

import pytest

from pysnn import _extension

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("version", ["2.4.0", "2.13.0+cpu", "2.14.1+cu130", "3.0.0a0"])
def test_supported_torch_versions_pass(version):
    _extension.check_torch_version(version)


@pytest.mark.parametrize("version", ["2.3.1", "1.13.1+cu117"])
def test_old_torch_is_refused_with_one_clear_line(version):
    with pytest.raises(ImportError, match=r"pysnn needs torch >= 2\.4, found"):
        _extension.check_torch_version(version)


def test_distribution_name_is_not_the_unrelated_pypi_pysnn():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] != "pysnn"
    assert project["license"] and project["classifiers"] and project["requires-python"]
    # torch stays out of the install requirements: a fresh install must never pull a CUDA torch.
    assert not any(dep.split("[")[0].strip().lower().startswith("torch") for dep in project["dependencies"])
