# CUDA settings for building the kernels with a torch CUDA build, including
# on machines with a minimal toolkit and no GPU (see BUILD_NOTES).
if(NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(ENV{TORCH_CUDA_ARCH_LIST} "8.0;9.0+PTX")
endif()
if(NOT CUDA_TOOLKIT_ROOT_DIR AND EXISTS "/usr/local/cuda/bin/nvcc")
  set(CUDA_TOOLKIT_ROOT_DIR "/usr/local/cuda")
  set(CMAKE_CUDA_COMPILER "/usr/local/cuda/bin/nvcc")
endif()
# CMake < 3.26 does not know the C++20 flag for CUDA; torch >= 2.10 needs it.
set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
# Torch's Caffe2 config looks for nvrtc; pip's CUDA wheels ship it.
execute_process(
  COMMAND "${Python_EXECUTABLE}" -c "import glob, nvidia, os; print(';'.join(glob.glob(os.path.join(list(nvidia.__path__)[0], '*', 'lib', 'libnvrtc.so*'))))"
  OUTPUT_VARIABLE _pysnn_nvrtc OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(_pysnn_nvrtc AND NOT CUDA_nvrtc_LIBRARY)
  list(GET _pysnn_nvrtc 0 CUDA_nvrtc_LIBRARY)
endif()
execute_process(
  COMMAND "${Python_EXECUTABLE}" -c "import glob, nvidia, os; print(';'.join(glob.glob(os.path.join(list(nvidia.__path__)[0], '*', 'include'))))"
  OUTPUT_VARIABLE PYSNN_CUDA_EXTRA_INCLUDES OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
enable_language(CUDA)
