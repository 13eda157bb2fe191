// A caching layer over PyTorch's CPU allocator for large blocks: a freed block
// of 1 MiB or more is kept, by size, and handed to the next request of that
// size instead of going back to the system. glibc maps every block above
// 32 MiB afresh and unmaps it on free, so without this each step's spike,
// membrane and gradient tensors pay a page fault per 4 KiB page; a training
// step asks for the same sizes every time, so after the first step every
// large block is a cache hit (what PyTorch's caching allocator does on CUDA).
//
// The CPU ops always allocate their large outputs here (empty_output), within
// a limit that pysnn sets when it loads; `pysnn.cpu_memory.keep_freed_memory()`
// also installs the cache as PyTorch's CPU allocator, for every tensor.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include "memory/cpu_block_cache.h"

#include <ATen/EmptyTensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <torch/library.h>

#include <cstdint>
#include <list>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

namespace pysnn {
namespace {

constexpr size_t kMinCached = size_t(1) << 20;
constexpr size_t kGranule = size_t(1) << 16;  // sizes rounded up to 64 KiB share a bucket

class CpuBlockCache final : public c10::Allocator {
 public:
  // Small requests go to the allocator PyTorch had before any install.
  CpuBlockCache() : base_(c10::GetCPUAllocator()) {}

  // Simple data pointers (context == data) with a raw deleter, as oneDNN's
  // raw_allocate / raw_deallocate require; the cache knows each large block's
  // size by its address.
  c10::DataPtr allocate(size_t n) override {
    if (n < kMinCached) return base_->allocate(n);
    const size_t size = (n + kGranule - 1) / kGranule * kGranule;
    void* ptr = take(size);
    if (ptr == nullptr) {
      ptr = c10::alloc_cpu(size);
      std::lock_guard<std::mutex> lock(mutex_);
      sizes_[ptr] = size;
    }
    return {ptr, ptr, &give_back, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &give_back; }

  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }

  // Held blocks beyond the new limit (all of them at 0) go back at once.
  void set_limit(size_t limit) {
    std::vector<void*> released;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      limit_ = limit;
      evict_until(limit_, released);
    }
    for (void* ptr : released)
      c10::free_cpu(ptr);
  }

  void install() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!installed_) c10::SetCPUAllocator(this, /*priority=*/100);
    installed_ = true;
  }

  std::vector<int64_t> stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {static_cast<int64_t>(cached_), hits_, misses_, static_cast<int64_t>(limit_), installed_ ? 1 : 0};
  }

  static CpuBlockCache& instance() {
    static CpuBlockCache* cache = new CpuBlockCache();  // never destroyed: deleters may run at exit
    return *cache;
  }

 private:
  using Held = std::list<std::pair<void*, size_t>>;  // oldest freed first

  void* take(size_t size) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = free_.find(size);
    if (found == free_.end() || found->second.empty()) {
      ++misses_;
      return nullptr;
    }
    const Held::iterator block = found->second.back();
    found->second.pop_back();
    void* ptr = block->first;
    held_.erase(block);
    cached_ -= size;
    ++hits_;
    return ptr;
  }

  // Drops the least recently freed blocks until at most `target` bytes are held.
  // A bucket lists its blocks in the order they were freed (give_back appends,
  // take pops the newest), so the oldest held block is the front of its bucket.
  void evict_until(size_t target, std::vector<void*>& released) {
    while (cached_ > target && !held_.empty()) {
      const auto [ptr, size] = held_.front();
      std::vector<Held::iterator>& bucket = free_[size];
      TORCH_INTERNAL_ASSERT_DEBUG_ONLY(!bucket.empty() && bucket.front() == held_.begin());
      bucket.erase(bucket.begin());
      held_.pop_front();
      sizes_.erase(ptr);
      cached_ -= size;
      released.push_back(ptr);
    }
  }

  static void give_back(void* ptr) {
    CpuBlockCache& cache = instance();
    std::vector<void*> released;
    {
      std::lock_guard<std::mutex> lock(cache.mutex_);
      auto found = cache.sizes_.find(ptr);
      if (found == cache.sizes_.end()) {
        released.push_back(ptr);  // a small block of PyTorch's allocator, freed through raw_deallocate
      } else if (found->second > cache.limit_) {
        cache.sizes_.erase(found);  // larger than the whole limit: back to the system
        released.push_back(ptr);
      } else {
        const size_t size = found->second;
        cache.evict_until(cache.limit_ - size, released);
        cache.free_[size].push_back(cache.held_.insert(cache.held_.end(), {ptr, size}));
        cache.cached_ += size;
      }
    }
    for (void* block : released)
      c10::free_cpu(block);
  }

  std::mutex mutex_;
  c10::Allocator* base_;
  bool installed_ = false;
  Held held_;
  std::unordered_map<size_t, std::vector<Held::iterator>> free_;  // size -> its held blocks
  std::unordered_map<void*, size_t> sizes_;                       // every large block handed out or held
  size_t cached_ = 0;
  size_t limit_ = 0;
  int64_t hits_ = 0;
  int64_t misses_ = 0;
};

void set_cpu_block_limit(int64_t limit_bytes) {
  TORCH_CHECK(limit_bytes >= 0, "the CPU block cache's limit must be >= 0 bytes, got ", limit_bytes);
  CpuBlockCache::instance().set_limit(static_cast<size_t>(limit_bytes));
}

void keep_cpu_blocks(int64_t limit_bytes) {
  set_cpu_block_limit(limit_bytes);
  CpuBlockCache::instance().install();
}

std::vector<int64_t> cpu_block_cache_stats() { return CpuBlockCache::instance().stats(); }

}  // namespace

at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  if (!options.device().is_cpu()) return at::empty(sizes, options);
  return at::detail::empty_generic(sizes, &CpuBlockCache::instance(), c10::DispatchKeySet(c10::DispatchKey::CPU),
                                   c10::typeMetaToScalarType(options.dtype()), c10::nullopt);
}

}  // namespace pysnn

TORCH_LIBRARY_FRAGMENT(pysnn, m) {
  // Process-wide allocator settings, not tensor ops (no tensor arguments).
  m.def("_set_cpu_block_limit(int limit_bytes) -> ()", &pysnn::set_cpu_block_limit);
  m.def("_keep_cpu_blocks(int limit_bytes) -> ()", &pysnn::keep_cpu_blocks);
  m.def("_cpu_block_cache_stats() -> int[]", &pysnn::cpu_block_cache_stats);
}
