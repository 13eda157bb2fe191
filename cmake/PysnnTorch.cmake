# Finds Torch through the Python interpreter that has torch installed
# (Python_EXECUTABLE, or the first python3 on PATH).
#
# Sets: the Python targets (Python_add_library) and the Torch prefix for
#       find_package(Torch).

find_package(Python REQUIRED COMPONENTS Interpreter Development.Module)

execute_process(
  COMMAND "${Python_EXECUTABLE}" -c "import torch; print(torch.utils.cmake_prefix_path)"
  OUTPUT_VARIABLE _pysnn_torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE
  RESULT_VARIABLE _pysnn_result)
if(NOT _pysnn_result EQUAL 0)
  message(FATAL_ERROR "pysnn: `import torch` failed with ${Python_EXECUTABLE}; install torch first")
endif()
list(APPEND CMAKE_PREFIX_PATH "${_pysnn_torch_prefix}")
