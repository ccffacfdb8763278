#include "vhost/ports/tap_steering.hpp"

#include <bpf/libbpf.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "vhost/ports/bpf/rss_steering.h"

// The program's object file, linked in by the Makefile (ld -r -b binary).
extern "C" const unsigned char _binary_rss_steering_bpf_o_start[];
extern "C" const unsigned char _binary_rss_steering_bpf_o_end[];

namespace minivmm {

namespace {
// libbpf explains a failure over several lines of its own; minivmm says one
// line (why the NIC has no RSS), so the last of libbpf's is kept for it.
std::mutex log_lock;
std::string last_libbpf_line;

int keep_last_line(enum libbpf_print_level level, const char* fmt, va_list ap) {
    if (level == LIBBPF_DEBUG) return 0;
    char line[256];
    std::vsnprintf(line, sizeof line, fmt, ap);
    std::string s(line);
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    if (!s.empty()) last_libbpf_line = s;
    return 0;
}

// bpf_call: a failure of libbpf's (whose last line, if any, says why);
// else of a call of minivmm's own, which libbpf's lines, left from an
// earlier load, would only mislead about.
std::runtime_error failure(const std::string& what, int err, bool bpf_call = true) {
    std::string why = what + ": " + std::strerror(err);
    if (!bpf_call) return std::runtime_error(why);
    if (err == EPERM || err == EACCES) why += " (loading BPF needs CAP_BPF or CAP_SYS_ADMIN)";
    else if (!last_libbpf_line.empty()) why += " (" + last_libbpf_line + ")";
    return std::runtime_error(why);
}

// The 32 key bits that start at bit `bit` of the key (MSB of byte 0 first);
// the key is zero past its end.
uint32_t key_window(const uint8_t* key, size_t key_len, unsigned bit) {
    uint64_t w = 0;
    for (unsigned i = 0; i < 8; i++) w = w << 8 | (bit / 8 + i < key_len ? key[bit / 8 + i] : 0);
    return static_cast<uint32_t>(w >> (32 - bit % 8));
}
}  // namespace

TapSteering::TapSteering() {
    std::lock_guard g(log_lock);
    last_libbpf_line.clear();
    libbpf_print_fn_t old = libbpf_set_print(keep_last_line);
    struct Restore {
        libbpf_print_fn_t fn;
        ~Restore() { libbpf_set_print(fn); }
    } restore{old};
    size_t size = static_cast<size_t>(_binary_rss_steering_bpf_o_end - _binary_rss_steering_bpf_o_start);
    obj_ = bpf_object__open_mem(_binary_rss_steering_bpf_o_start, size, nullptr);
    if (!obj_) throw failure("opening the steering program", errno);
    if (int err = bpf_object__load(obj_)) {
        bpf_object__close(obj_);
        throw failure("loading the steering program", -err);
    }
    bpf_program* prog = bpf_object__find_program_by_name(obj_, "rss_steer");
    bpf_map* map = bpf_object__find_map_by_name(obj_, "rss_map");
    if (!prog || !map) {
        bpf_object__close(obj_);
        throw std::runtime_error("the steering program's object lacks rss_steer or rss_map");
    }
    prog_fd_ = bpf_program__fd(prog);
    long page = sysconf(_SC_PAGESIZE);
    map_len_ = (sizeof(rss_steering) + page - 1) / page * page;
    void* mem = mmap(nullptr, map_len_, PROT_READ | PROT_WRITE, MAP_SHARED, bpf_map__fd(map), 0);
    if (mem == MAP_FAILED) {
        int err = errno;
        bpf_object__close(obj_);
        throw failure("mapping the steering program's map (BPF_F_MMAPABLE, Linux 5.5 or later)", err, false);
    }
    map_ = static_cast<rss_steering*>(mem);
    clear();
}

TapSteering::~TapSteering() {
    if (tap_fd_ >= 0) {
        int none = -1;
        ioctl(tap_fd_, TUNSETSTEERINGEBPF, &none);
    }
    munmap(map_, map_len_);
    bpf_object__close(obj_);
}

void TapSteering::attach(int tap_fd) {
    int fd = prog_fd_;
    if (ioctl(tap_fd, TUNSETSTEERINGEBPF, &fd) < 0) throw failure("TUNSETSTEERINGEBPF", errno, false);
    tap_fd_ = tap_fd;
}

// Programs read the slot `active` names; the other is written.
rss_slot& TapSteering::spare_slot() {
    return map_->slot[std::atomic_ref<uint32_t>(map_->active).load(std::memory_order_relaxed) & 1 ? 0 : 1];
}

void TapSteering::set(uint32_t hash_types, std::span<const uint8_t> key, std::span<const uint16_t> table,
                      uint16_t unclassified) {
    fill(RSS_MODE_TABLE, hash_types, key, table, unclassified);
}

void TapSteering::clear() {
    // Any fixed key spreads flows; this one is the virtio spec's (and
    // Microsoft's) example key. All six hash types the device offers:
    // VIRTIO_NET_RSS_HASH_TYPE_IPv4, TCPv4, UDPv4, IPv6, TCPv6, UDPv6.
    static const uint8_t kKey[RSS_KEY_MAX] = {
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
        0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
        0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa};
    fill(RSS_MODE_SPREAD, 0x3f, kKey, {}, 0);
}

void TapSteering::fill(uint32_t mode, uint32_t hash_types, std::span<const uint8_t> key,
                       std::span<const uint16_t> table, uint16_t unclassified) {
    rss_slot& s = spare_slot();
    s.mode = mode;
    s.hash_types = hash_types;
    size_t n = std::clamp<size_t>(table.size(), 1, RSS_TABLE_MAX);
    s.table_mask = static_cast<uint16_t>(n - 1);
    s.unclassified = unclassified;
    for (size_t i = 0; i < RSS_TABLE_MAX; i++) s.table[i] = table.empty() ? 0 : table[i % n];
    // What byte value v at input position i adds: the XOR of the windows
    // of its set bits, built from the value less its lowest set bit.
    size_t key_len = std::min<size_t>(key.size(), RSS_KEY_MAX);
    for (unsigned i = 0; i < RSS_INPUT_MAX; i++) {
        uint32_t bit_window[8];
        for (unsigned b = 0; b < 8; b++) bit_window[b] = key_window(key.data(), key_len, 8 * i + 7 - b);
        s.toeplitz[i][0] = 0;
        for (unsigned v = 1; v < 256; v++)
            s.toeplitz[i][v] = s.toeplitz[i][v & (v - 1)] ^ bit_window[__builtin_ctz(v)];
    }
    // Programs read the slot `active` names; the other one is now whole.
    std::atomic_ref<uint32_t> active(map_->active);
    active.store(active.load(std::memory_order_relaxed) ^ 1, std::memory_order_release);
}

}  // namespace minivmm
