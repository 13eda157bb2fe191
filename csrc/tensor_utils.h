#pragma once
// Small helpers for optional tensor arguments, shared by the CPU and CUDA
// entry points.
#include <ATen/core/Tensor.h>
#include <c10/util/DimVector.h>
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

// The data pointer of an output the caller may not want (returned empty,
// e.g. dL/du0 without a u0), or nullptr when it is empty.
template <typename scalar_t>
scalar_t* data_or_null(at::Tensor& t) {
  return t.numel() > 0 ? t.data_ptr<scalar_t>() : nullptr;
}

// An input's gradient: shaped like it when it was given, else empty.
inline c10::DimVector grad_shape_if(const c10::optional<at::Tensor>& input, c10::IntArrayRef shape) {
  return input.has_value() ? c10::DimVector(shape) : c10::DimVector{0};
}

}  // namespace pysnn
