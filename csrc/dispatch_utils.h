#pragma once
// Turns a runtime enum value into a compile-time one:
//   dispatch_value<E::kA, E::kB>(value, [&](auto tag) { kernel<decltype(tag)::value>(...); });
// calls f with std::integral_constant<E, v> for the listed v equal to `value`.
#include <type_traits>

namespace pysnn {

template <auto... Values, typename Enum, typename F>
void dispatch_value(Enum value, F&& f) {
  static_assert((std::is_same_v<decltype(Values), Enum> && ...), "values must be of the dispatched enum");
  (void)((value == Values ? (f(std::integral_constant<Enum, Values>{}), true) : false) || ...);
}

}  // namespace pysnn
