#pragma once
// Small helpers for optional tensor arguments, shared by the CPU and CUDA
// entry points.
#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

namespace pysnn {

inline c10::optional<at::Tensor> optional_contiguous(const c10::optional<at::Tensor>& t) {
  return t.has_value() ? c10::optional<at::Tensor>(t->contiguous()) : c10::nullopt;
}

// The data pointer of an optional tensor, or nullptr when it is absent.
template <typename scalar_t>
const scalar_t* optional_data(const c10::optional<at::Tensor>& t) {
  return t.has_value() ? t->const_data_ptr<scalar_t>() : nullptr;
}

}  // namespace pysnn
