// Shared by the virtio-net fuzz targets: checks that say what failed, guest
// RAM whose surroundings ASan watches, a port over socketpairs, and frames
// made from a few input bytes. The driver's side of a ring is the tests'
// own (tests/support/guest_ring.hpp).
#pragma once
#include <fuzzer/FuzzedDataProvider.h>
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_check.hpp"
#include "tests/support/guest_ring.hpp"
#include "vhost/ports/port.hpp"
#include "vmm/guest_memory.hpp"

namespace minivmm::fuzz {

// FUZZ_TRACE=1 in the environment: each step said on stderr, to follow
// one input (run it without -close_fd_mask).
inline bool tracing() {
    static bool on = std::getenv("FUZZ_TRACE") != nullptr;
    return on;
}
#define TRACE(...)                                          \
    do {                                                    \
        if (::minivmm::fuzz::tracing()) std::fprintf(stderr, __VA_ARGS__); \
    } while (0)

constexpr uint64_t kPage = 4096;
// Host memory either side of guest RAM that ASan reports any access to.
// Mapped, so that a readv() aimed there succeeds and its interceptor sees
// the write, rather than failing with EFAULT unnoticed.
constexpr uint64_t kRedzone = 128 * 1024;

inline void poison(uint8_t* p, uint64_t n) { __asan_poison_memory_region(p, n); }

// Guest RAM in regions at the given guest-physical addresses, laid out in
// one host mapping with a poisoned red zone before, between and after them.
class FuzzRam : public MemView {
public:
    struct Region {
        uint64_t gpa, size;
        uint8_t* hva;
    };
    explicit FuzzRam(std::vector<std::pair<uint64_t, uint64_t>> regions) {
        uint64_t total = kRedzone;
        for (auto& [gpa, size] : regions) total += size + kRedzone;
        auto* base = static_cast<uint8_t*>(
            mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
        CHECK(base != MAP_FAILED);
        poison(base, total);
        uint8_t* at = base + kRedzone;
        for (auto& [gpa, size] : regions) {
            __asan_unpoison_memory_region(at, size);
            regions_.push_back({gpa, size, at});
            at += size + kRedzone;
        }
    }
    uint8_t* ptr(uint64_t gpa, uint64_t len) const override {
        for (const Region& r : regions_)
            if (gpa >= r.gpa && gpa - r.gpa <= r.size && len <= r.size - (gpa - r.gpa)) return r.hva + (gpa - r.gpa);
        return nullptr;
    }
    const std::vector<Region>& regions() const { return regions_; }
    void clear() const {
        for (const Region& r : regions_) std::memset(r.hva, 0, r.size);
    }

private:
    std::vector<Region> regions_;
};

// The same watch around a GuestMemory (what VirtioNet takes): its mapping
// gets poisoned neighbours where the address space is free.
inline void guard(const GuestMemory& mem) {
    for (const MemRegion& r : mem.regions())
        for (uint8_t* at : {r.hva - kRedzone, r.hva + r.size}) {
            void* p = mmap(at, kRedzone, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                           -1, 0);
            if (p == MAP_FAILED) continue;
            if (p != at) {  // an old kernel took it as a hint
                munmap(p, kRedzone);
                continue;
            }
            poison(at, kRedzone);
        }
}

// The fuzzer's guest RAM, made and guarded on first use and kept for every
// input (each fuzzer is one binary, so it asks for one size).
inline GuestMemory& guarded_ram(uint64_t size) {
    static GuestMemory* m = [size] {
        auto* g = new GuestMemory(size);
        guard(*g);
        return g;
    }();
    return *m;
}

// The driver's writes to a split ring, as every test of the rings makes them.
using testing::GuestRing;
using testing::RingLayout;
using testing::kIndirect;
using testing::kNext;
using testing::kWrite;
using testing::load16;
using testing::put;
using testing::get;
using testing::store;
using testing::store16;
using testing::write_desc;

// Pages of one RAM area handed out to chains and given back when the device
// returns them, so that in-flight buffers never overlap.
class PagePool {
public:
    PagePool(uint64_t base, uint64_t pages) : base_(base), used_(pages, 0) {}
    // n contiguous pages, or 0 when there is no such run. First fit from
    // where the last one ended, so that a run of takes does not rescan.
    uint64_t take(uint64_t n) {
        uint64_t size = used_.size();
        if (n == 0 || n > size) return 0;
        for (uint64_t tries = 0, i = next_ % size, run = 0; tries < size + n; tries++, i = (i + 1) % size) {
            if (i == 0) run = 0;  // runs do not wrap
            run = used_[i] ? 0 : run + 1;
            if (run == n) {
                uint64_t first = i + 1 - n;
                std::memset(&used_[first], 1, n);
                next_ = i + 1;
                return base_ + first * kPage;
            }
        }
        return 0;
    }
    void give(uint64_t at, uint64_t n) {
        uint64_t first = (at - base_) / kPage;
        for (uint64_t i = first; i < first + n && i < used_.size(); i++) used_[i] = 0;
    }
    void clear() {
        std::fill(used_.begin(), used_.end(), 0);
        next_ = 0;
    }
    // The longest run of free pages.
    uint64_t free_run() const {
        uint64_t best = 0;
        for (uint64_t i = 0, run = 0; i < used_.size(); i++) best = std::max(best, run = used_[i] ? 0 : run + 1);
        return best;
    }

private:
    uint64_t base_;
    std::vector<uint8_t> used_;
    uint64_t next_ = 0;
};

// A NIC's port without a tap: one SOCK_SEQPACKET socketpair per queue pair,
// which keeps frame boundaries as a tap or a packet socket does. The device
// gets one end; the fuzzer plays the network at the other.
class SocketPort : public NetPort {
public:
    SocketPort(unsigned pairs, bool header) : header_(header), attached_(pairs, true) {
        for (unsigned k = 0; k < pairs; k++) {
            int fd[2];
            CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fd) == 0);
            // Room for a few of the largest frames either way.
            int buf = 1 << 20;
            for (int f : fd) setsockopt(f, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
            dev_.push_back(fd[0]);
            peer_.push_back(fd[1]);
        }
    }
    ~SocketPort() override {
        for (int f : dev_) close(f);
        for (int f : peer_) close(f);
    }
    std::string describe() const override { return "fuzz socketpair"; }
    unsigned queues() const override { return static_cast<unsigned>(dev_.size()); }
    int fd(unsigned q) const override { return dev_.at(q); }
    bool vnet_header() const override { return header_; }
    void set_offload(unsigned flags) override { offload = flags; }
    void set_queue_attached(unsigned q, bool on) override {
        CHECK(q < attached_.size() && q > 0);
        attached_[q] = on;
    }
    int peer(unsigned q) const { return peer_.at(q); }
    bool attached(unsigned q) const { return attached_.at(q); }
    // Frames waiting at the peer: all of them read and returned.
    static std::vector<std::vector<uint8_t>> drain(int fd) {
        std::vector<std::vector<uint8_t>> got;
        static uint8_t buf[256 * 1024];
        for (;;) {
            ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            if (n < 0) break;
            got.emplace_back(buf, buf + n);
        }
        return got;
    }
    unsigned offload = 0;

private:
    bool header_;
    std::vector<int> dev_, peer_;
    std::vector<bool> attached_;
};

// A frame of len bytes from a seed: distinct frames from distinct seeds,
// without spending input bytes on the content (a slice of a fixed random
// pool, as a byte loop under coverage instrumentation would be slow).
inline std::vector<uint8_t> make_frame(size_t len, uint32_t seed) {
    constexpr size_t kPool = 512 * 1024;
    static const std::vector<uint8_t> pool = [] {
        std::vector<uint8_t> p(kPool);
        uint64_t x = 0x9e3779b97f4a7c15ull;
        for (size_t i = 0; i < kPool; i += 8) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            std::memcpy(&p[i], &x, 8);
        }
        return p;
    }();
    if (len > kPool / 2) len = kPool / 2;
    size_t at = (seed * 40503ull) % (kPool / 2);
    return std::vector<uint8_t>(pool.begin() + static_cast<std::ptrdiff_t>(at),
                                pool.begin() + static_cast<std::ptrdiff_t>(at + len));
}

// Whether n bytes at p are all zero (memcmp: a byte loop is slow under
// coverage instrumentation).
inline bool all_zero(const uint8_t* p, size_t n) {
    static const uint8_t zero[4096] = {};
    for (size_t at = 0; at < n; at += sizeof zero)
        if (std::memcmp(p + at, zero, std::min(n - at, sizeof zero))) return false;
    return true;
}

}  // namespace minivmm::fuzz
