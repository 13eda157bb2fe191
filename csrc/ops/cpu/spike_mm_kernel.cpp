// CPU kernel of _spike_mm(a, spikes) = aᵀ · spikes for a [K, N] and spikes
// [K, C] (see csrc/ops/hsic.h). In the three-factor update a = δ (the
// post-synaptic signal of K = T·m step-samples) and spikes = the presynaptic
// spikes, all 0 or 1. Binary spikes allow the "four Russians" method: take
// the rows of δ eight at a time, tabulate the 256 sums of their subsets, and
// add to each output column the one entry its eight spike bits select. That
// is 256 + C row additions per eight rows where a GEMM does 8·C
// multiply-adds: 6x fewer operations at C = 784, though each is a load from
// a table in L2; measured 1.4-2x faster than OpenBLAS's GEMM here (BENCHMARKS.md).
// Non-binary input, and fewer than eight rows, go to ATen's GEMM.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "macros.h"
#include "ops/hsic_common.h"

namespace pysnn {
namespace hsic {
namespace {

constexpr int kBits = 8;              // rows of a per table
constexpr int kEntries = 1 << kBits;  // subset sums per table
constexpr int64_t kPanelBytes = 256;  // output features per pass: 8 AVX registers

// 32-byte vectors (AVX registers; two SSE registers in the baseline clone),
// through GCC vector types: -O3's unroll-and-jam turns the plain-array form
// of these loops into scalar code. (An alias template would drop the attribute.)
template <typename scalar_t>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(32)));
};
template <typename scalar_t>
using Vec = typename VecOf<scalar_t>::type;
template <typename scalar_t>
constexpr int64_t kPanel = kPanelBytes / sizeof(scalar_t);
constexpr int64_t kVectors = kPanelBytes / 32;

// The eight spike bits of each column for every group of eight rows:
// patterns[g * C + c] bit b = spikes[8g + b, c]. False if a value is not 0 or 1.
template <typename scalar_t>
bool spike_patterns(const at::Tensor& spikes, std::vector<uint8_t>& patterns) {
  const int64_t rows = spikes.size(0), columns = spikes.size(1), groups = (rows + kBits - 1) / kBits;
  const scalar_t* data = spikes.const_data_ptr<scalar_t>();
  patterns.assign(groups * columns, 0);
  std::vector<char> binary(groups, 1);
  at::parallel_for(0, groups, 1, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      uint8_t* out = patterns.data() + g * columns;
      for (int64_t b = 0; b < kBits && g * kBits + b < rows; ++b) {
        const scalar_t* row = data + (g * kBits + b) * columns;
        bool ok = true;
        for (int64_t c = 0; c < columns; ++c) {
          ok &= row[c] == scalar_t(0) || row[c] == scalar_t(1);
          out[c] |= static_cast<uint8_t>(row[c] != scalar_t(0)) << b;
        }
        binary[g] &= ok;
      }
    }
  });
  return std::all_of(binary.begin(), binary.end(), [](char ok) { return ok != 0; });
}

// out = x + y over one panel row; inlined into the AVX2 and baseline clones below.
template <typename scalar_t>
__attribute__((always_inline)) inline void add_rows(const scalar_t* x, const scalar_t* y, scalar_t* out) {
  for (int64_t q = 0; q < kVectors; ++q) {
    Vec<scalar_t> u, v;
    std::memcpy(&u, x + q * 32 / sizeof(scalar_t), 32);
    std::memcpy(&v, y + q * 32 / sizeof(scalar_t), 32);
    u += v;
    std::memcpy(out + q * 32 / sizeof(scalar_t), &u, 32);
  }
}

// table[p] = Σ_{b in p} rows[b] for the `count` rows (panel-wide) of one group,
// each entry from a smaller one plus one row.
template <typename scalar_t>
PYSNN_CPU_CLONES void subset_sums(const scalar_t* rows, int64_t count, scalar_t* table) {
  constexpr int64_t width = kPanel<scalar_t>;
  std::memset(table, 0, width * sizeof(scalar_t));
  for (int64_t p = 1; p < (int64_t{1} << count); ++p) {
    const int64_t low = p & -p;  // the lowest set bit
    add_rows(table + (p ^ low) * width, rows + __builtin_ctzll(low) * width, table + p * width);
  }
}

// tile[c] += Σ_h tables[h][patterns[h][c]] over kTables groups, for every
// column c with a spike in any of them (several tables per pass divide the
// traffic on the tile).
constexpr int64_t kTables = 2;

template <typename scalar_t>
PYSNN_CPU_CLONES void gather_add(const scalar_t* tables, const uint8_t* const* patterns, int64_t columns,
                                 scalar_t* tile) {
  constexpr int64_t width = kPanel<scalar_t>, entries = kEntries * kPanel<scalar_t>;
  for (int64_t c = 0; c < columns; ++c) {
    uint8_t any = 0;
    for (int64_t h = 0; h < kTables; ++h)
      any |= patterns[h][c];
    if (any == 0) continue;
    scalar_t* row = tile + c * width;
    for (int64_t h = 0; h < kTables; ++h)
      add_rows(row, tables + h * entries + patterns[h][c] * width, row);
  }
}

at::Tensor spike_mm_cpu(const at::Tensor& a, const at::Tensor& spikes_) {
  check_spike_mm(a, spikes_, c10::DeviceType::CPU);
  const int64_t rows = a.size(0), width = a.size(1), columns = spikes_.size(1);
  if (rows < kBits || width == 0 || columns == 0) return at::mm(a.t(), spikes_);
  const at::Tensor spikes = spikes_.contiguous();
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "_spike_mm_cpu", [&] {
    std::vector<uint8_t> patterns;
    if (!spike_patterns<scalar_t>(spikes, patterns)) {
      out = at::mm(a.t(), spikes);
      return;
    }
    constexpr int64_t panel = kPanel<scalar_t>;
    const int64_t panels = (width + panel - 1) / panel, groups = (rows + kBits - 1) / kBits;
    const at::Tensor lhs = a.contiguous();
    out = at::empty({width, columns}, a.options());
    const scalar_t* a_data = lhs.const_data_ptr<scalar_t>();
    scalar_t* out_data = out.data_ptr<scalar_t>();
    at::parallel_for(0, panels, 1, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> table(kTables * kEntries * panel), tile(columns * panel), panel_rows(rows * panel);
      const std::vector<uint8_t> none(columns, 0);
      for (int64_t p = begin; p < end; ++p) {
        // This panel of a, [K, panel] and zero-padded, contiguous: its rows
        // then do not collide in cache as a power-of-two stride would make them.
        const int64_t n0 = p * panel, n_width = std::min(panel, width - n0);
        std::fill(panel_rows.begin(), panel_rows.end(), scalar_t(0));
        for (int64_t k = 0; k < rows; ++k) {
          std::memcpy(panel_rows.data() + k * panel, a_data + k * width + n0, n_width * sizeof(scalar_t));
        }
        std::fill(tile.begin(), tile.end(), scalar_t(0));
        for (int64_t g = 0; g < groups; g += kTables) {
          // Past the last group a slot reads entry 0 of its table, which is all zeros.
          const uint8_t* slot_patterns[kTables];
          for (int64_t h = 0; h < kTables; ++h) {
            if (g + h < groups) {
              subset_sums(panel_rows.data() + (g + h) * kBits * panel, std::min<int64_t>(kBits, rows - (g + h) * kBits),
                          table.data() + h * kEntries * panel);
              slot_patterns[h] = patterns.data() + (g + h) * columns;
            } else {
              slot_patterns[h] = none.data();
            }
          }
          gather_add(table.data(), slot_patterns, columns, tile.data());
        }
        // tile is outᵀ for this panel: write it back transposed.
        for (int64_t j = 0; j < n_width; ++j) {
          scalar_t* row = out_data + (n0 + j) * columns;
          for (int64_t c = 0; c < columns; ++c)
            row[c] = tile[c * panel + j];
        }
      }
    });
  });
  return out;
}

}  // namespace
}  // namespace hsic
}  // namespace pysnn

TORCH_LIBRARY_IMPL(pysnn, CPU, m) { m.impl("_spike_mm", &pysnn::hsic::spike_mm_cpu); }
