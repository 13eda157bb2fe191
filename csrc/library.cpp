// The one TORCH_LIBRARY block of the `pysnn` namespace. Each op declares its
// own schema in csrc/ops/<op>.cpp with TORCH_LIBRARY_FRAGMENT.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include <torch/library.h>

TORCH_LIBRARY(pysnn, m) {}
