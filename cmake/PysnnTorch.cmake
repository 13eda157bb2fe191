# Finds Torch, pybind11 and libtorch_python through the Python interpreter
# that has torch installed (Python_EXECUTABLE, or the first python3 on PATH).
#
# Sets: Torch targets (find_package(Torch)), pybind11 targets, and
#       PYSNN_TORCH_PYTHON_LIBRARY (needed by a module that passes tensors).

find_package(Python REQUIRED COMPONENTS Interpreter Development.Module)

execute_process(
  COMMAND "${Python_EXECUTABLE}" -c "import torch; print(torch.utils.cmake_prefix_path)"
  OUTPUT_VARIABLE _pysnn_torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE
  RESULT_VARIABLE _pysnn_result)
if(NOT _pysnn_result EQUAL 0)
  message(FATAL_ERROR "pysnn: `import torch` failed with ${Python_EXECUTABLE}; install torch first")
endif()
list(APPEND CMAKE_PREFIX_PATH "${_pysnn_torch_prefix}")

# Prefer the pybind11 that torch was built with; fall back to pip's pybind11.
execute_process(
  COMMAND "${Python_EXECUTABLE}" -c "import pybind11; print(pybind11.get_cmake_dir())"
  OUTPUT_VARIABLE _pysnn_pybind11_dir OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(_pysnn_pybind11_dir)
  set(pybind11_DIR "${_pysnn_pybind11_dir}")
endif()

execute_process(
  COMMAND "${Python_EXECUTABLE}" -c "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))"
  OUTPUT_VARIABLE _pysnn_torch_lib OUTPUT_STRIP_TRAILING_WHITESPACE)
find_library(PYSNN_TORCH_PYTHON_LIBRARY torch_python PATHS "${_pysnn_torch_lib}" REQUIRED NO_DEFAULT_PATH)
