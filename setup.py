"""Builds pysnn._C ahead of time when torch is importable (use
`pip install --no-build-isolation .`); otherwise builds a pure-Python wheel
whose first import compiles the shipped sources against the installed torch.

Environment:
  PYSNN_CPU_ONLY=1   skip the CUDA kernels
  FORCE_CUDA=1       compile the CUDA kernels even without a visible GPU
  TORCH_CUDA_ARCH_LIST  defaults to "8.0;9.0+PTX" when no GPU is visible
"""

import importlib.util
import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("pysnn_build", ROOT / "pysnn" / "_build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)


class BuildPyWithSources(build_py):
    """Ship csrc/ inside the package as pysnn/_csrc for the JIT fallback."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / "pysnn" / "_csrc"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(ROOT / "csrc", target)


def extension_modules():
    try:
        build.set_default_cuda_home()
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        print(
            "pysnn: torch is not importable here (isolated build?); the kernels "
            "will compile on first import. Use --no-build-isolation to build now."
        )
        return [], {}

    with_cuda = not build.env_flag("PYSNN_CPU_ONLY") and (
        build.env_flag("FORCE_CUDA") or (torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None)
    )
    if with_cuda and not torch.cuda.is_available():
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", build.DEFAULT_CUDA_ARCH_LIST)
    extension = cpp_extension.CUDAExtension if with_cuda else cpp_extension.CppExtension
    csrc = ROOT / "csrc"
    module = extension(
        name="pysnn._C",
        sources=[os.path.relpath(s, ROOT) for s in build.sources(csrc, with_cuda)],
        include_dirs=[str(csrc)] + (build.cuda_include_dirs() if with_cuda else []),
        extra_compile_args={"cxx": build.CXX_FLAGS, "nvcc": build.NVCC_FLAGS},
        extra_link_args=build.LINK_FLAGS,
    )
    print(
        f"pysnn: building pysnn._C against torch {torch.__version__} "
        f"({'CPU + CUDA' if with_cuda else 'CPU only'} kernels)"
    )
    return [module], {"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = extension_modules()
setup(ext_modules=ext_modules, cmdclass={"build_py": BuildPyWithSources, **cmdclass})
