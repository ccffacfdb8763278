#include "vmm/dirty_pages.hpp"

#include <linux/kvm.h>
#include <sys/mman.h>

#include <atomic>
#include <cstdio>

#include "vmm/error.hpp"
#include "vmm/kvm.hpp"

namespace minivmm {

namespace {
constexpr uint64_t kPage = 4096;

// Adds page (an index over guest-physical memory) to the runs, merging with
// the last run when adjacent: pages arrive in ascending order.
void add_page(std::vector<PageRun>& runs, uint64_t page) {
    uint64_t gpa = page * kPage;
    if (!runs.empty() && runs.back().gpa + runs.back().len == gpa)
        runs.back().len += kPage;
    else
        runs.push_back({gpa, kPage});
}
}  // namespace

DirtyPages::DirtyPages(Vm& vm, const GuestMemory& mem) : vm_(vm), mem_(mem) {
    const MemRegion& last = mem.regions().back();
    uint64_t pages = (last.gpa + last.size) / kPage;
    vhost_log_bytes_ = (pages + 63) / 64 * 8;  // whole words: collect() takes them a word at a time
    void* p = ::mmap(nullptr, vhost_log_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw internal_error("mapping the dirty log");
    vhost_log_ = static_cast<uint8_t*>(p);
}

DirtyPages::~DirtyPages() {
    // Reached while a failed migration unwinds too: a KVM that will not
    // take the slots back is said once, never a second exception.
    try {
        stop();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "\r\nminivmm: migration: turning KVM's dirty log off: %s\n", e.what());
    }
    ::munmap(vhost_log_, vhost_log_bytes_);
}

void DirtyPages::set_logging(bool on) {
    uint32_t slot = 0;
    for (const MemRegion& r : mem_.regions())
        vm_.set_memory(slot++, r.gpa, r.size, r.hva, on ? KVM_MEM_LOG_DIRTY_PAGES : 0);
}

void DirtyPages::start() {
    if (on_) return;
    // The bitmap's pages are dropped rather than cleared: zero either way,
    // and the memory goes back to the host between migrations.
    ::madvise(vhost_log_, vhost_log_bytes_, MADV_DONTNEED);
    set_logging(true);
    on_ = true;
}

void DirtyPages::stop() {
    if (!on_) return;
    on_ = false;
    set_logging(false);
}

std::vector<PageRun> DirtyPages::collect() {
    // KVM's per slot: one bit per page of the slot, cleared as it is read.
    std::vector<uint64_t> merged(vhost_log_bytes_ / 8, 0);
    uint32_t slot = 0;
    for (const MemRegion& r : mem_.regions()) {
        uint64_t pages = r.size / kPage;
        kvm_bitmap_.assign((pages + 63) / 64, 0);
        kvm_dirty_log log{};
        log.slot = slot++;
        log.dirty_bitmap = kvm_bitmap_.data();
        kvm_ioctl(vm_.fd(), KVM_GET_DIRTY_LOG, &log, "GET_DIRTY_LOG");
        uint64_t first = r.gpa / kPage;  // regions start on 2 MiB boundaries: whole words
        for (size_t w = 0; w < kvm_bitmap_.size(); w++) merged[first / 64 + w] |= kvm_bitmap_[w];
    }
    // The vhost log: taken a word at a time, atomically, from writers that
    // set bits a byte at a time (the kernel's set_bit, DirtyLog::mark).
    auto* words = reinterpret_cast<uint64_t*>(vhost_log_);
    for (size_t w = 0; w < merged.size(); w++) {
        std::atomic_ref<uint64_t> word(words[w]);
        if (word.load(std::memory_order_relaxed)) merged[w] |= word.exchange(0);
    }
    std::vector<PageRun> runs;
    for (size_t w = 0; w < merged.size(); w++)
        for (uint64_t bits = merged[w]; bits; bits &= bits - 1) {
            uint64_t page = w * 64 + uint64_t(__builtin_ctzll(bits));
            // Only RAM: the vhost log may name a page only if a backend wrote it, but check.
            if (mem_.ptr(page * kPage, kPage)) add_page(runs, page);
        }
    return runs;
}

}  // namespace minivmm
