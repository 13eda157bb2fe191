// The one TORCH_LIBRARY block of the `pysnn` namespace. Each op declares its
// own schema in csrc/ops/<op>.cpp with TORCH_LIBRARY_FRAGMENT.
#include <torch/library.h>

TORCH_LIBRARY(pysnn, m) {}
