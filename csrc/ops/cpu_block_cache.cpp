// A caching layer over PyTorch's CPU allocator for large blocks: a freed block
// of 1 MiB or more is kept, by size, and handed to the next request of that
// size instead of going back to the system. glibc maps every block above
// 32 MiB afresh and unmaps it on free, so without this each step's spike,
// membrane and gradient tensors pay a page fault per 4 KiB page; a training
// step asks for the same sizes every time, so after the first step every
// large block is a cache hit (what PyTorch's caching allocator does on CUDA).
// Off until `pysnn.cpu_memory.keep_freed_memory()` installs it.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <torch/library.h>

#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace pysnn {
namespace {

constexpr size_t kMinCached = size_t(1) << 20;
constexpr size_t kGranule = size_t(1) << 16;  // sizes rounded up to 64 KiB share a bucket

class CpuBlockCache final : public c10::Allocator {
 public:
  // Simple data pointers (context == data) with a raw deleter, as oneDNN's
  // raw_allocate / raw_deallocate require; the cache knows each large block's
  // size by its address. Small requests go to PyTorch's allocator as before.
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

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  void install(int64_t limit_bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    limit_ = static_cast<size_t>(limit_bytes);
    if (base_ == nullptr) {
      base_ = c10::GetCPUAllocator();
      c10::SetCPUAllocator(this, /*priority=*/100);
    }
  }

  std::vector<int64_t> stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {static_cast<int64_t>(cached_), static_cast<int64_t>(hits_), static_cast<int64_t>(misses_)};
  }

  static CpuBlockCache& instance() {
    static CpuBlockCache* cache = new CpuBlockCache();  // never destroyed: deleters may run at exit
    return *cache;
  }

 private:
  void* take(size_t size) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = free_.find(size);
    if (found == free_.end() || found->second.empty()) {
      ++misses_;
      return nullptr;
    }
    void* ptr = found->second.back();
    found->second.pop_back();
    cached_ -= size;
    ++hits_;
    return ptr;
  }

  static void give_back(void* ptr) {
    CpuBlockCache& cache = instance();
    {
      std::lock_guard<std::mutex> lock(cache.mutex_);
      auto found = cache.sizes_.find(ptr);
      if (found == cache.sizes_.end()) {
        // a small block of PyTorch's allocator, freed through raw_deallocate
      } else if (cache.cached_ + found->second <= cache.limit_) {
        cache.free_[found->second].push_back(ptr);
        cache.cached_ += found->second;
        return;
      } else {
        cache.sizes_.erase(found);  // over the limit: back to the system
      }
    }
    c10::free_cpu(ptr);
  }

  std::mutex mutex_;
  c10::Allocator* base_ = nullptr;
  std::unordered_map<size_t, std::vector<void*>> free_;  // size -> blocks held for reuse
  std::unordered_map<void*, size_t> sizes_;                // every large block handed out or held
  size_t cached_ = 0;
  size_t limit_ = 0;
  int64_t hits_ = 0;
  int64_t misses_ = 0;
};

void keep_cpu_blocks(int64_t limit_bytes) {
  TORCH_CHECK(limit_bytes >= 0, "keep_cpu_blocks: limit_bytes must be >= 0, got ", limit_bytes);
  CpuBlockCache::instance().install(limit_bytes);
}

std::vector<int64_t> cpu_block_cache_stats() { return CpuBlockCache::instance().stats(); }

}  // namespace
}  // namespace pysnn

TORCH_LIBRARY_FRAGMENT(pysnn, m) {
  // Process-wide allocator settings, not tensor ops (no tensor arguments).
  m.def("_keep_cpu_blocks(int limit_bytes) -> ()", &pysnn::keep_cpu_blocks);
  m.def("_cpu_block_cache_stats() -> int[]", &pysnn::cpu_block_cache_stats);
}
