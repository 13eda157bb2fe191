#pragma once
// Where the ops allocate their outputs (cpu_block_cache.cpp).
#include <ATen/core/Tensor.h>

namespace pysnn {

// at::empty for an op's output. On the CPU a block of 1 MiB or more comes from
// pysnn's cache of freed blocks (no page faults once a size has been seen),
// whether or not that cache was installed as PyTorch's CPU allocator; on other
// devices it is at::empty.
at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options);

}  // namespace pysnn
