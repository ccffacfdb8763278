// A tap's receive steering by the guest's RSS settings: the BPF program of
// bpf/rss_steering.bpf.c (embedded in minivmm), loaded with libbpf and
// attached to the tap with TUNSETSTEERINGEBPF while minivmm still holds its
// privileges (CAP_BPF or CAP_SYS_ADMIN to load). The kernel then runs it for
// every frame the host sends into the tap, whichever datapath moves the
// frames on. Its settings live in a BPF_F_MMAPABLE array map that minivmm
// keeps mapped: a change is memory writes (rss_steering.h says how the
// program reads safely meanwhile), so the threads serving the guest need
// no bpf() call.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>

#include "vhost/ports/port.hpp"

struct bpf_object;
struct rss_steering;
struct rss_slot;

namespace minivmm {

class TapSteering : public PortSteering {
public:
    // Loads the program (not attached: tests run it with BPF_PROG_TEST_RUN).
    // Throws std::runtime_error saying why it cannot (no permission, a
    // kernel without what it needs).
    TapSteering();
    // Detaches it from the tap it was attached to (an existing tap outlives
    // minivmm: it must not keep steering by a table no one updates).
    ~TapSteering() override;
    TapSteering(const TapSteering&) = delete;
    TapSteering& operator=(const TapSteering&) = delete;

    // TUNSETSTEERINGEBPF on one of the tap's fds (the program belongs to
    // the tap device, not the queue). Throws std::runtime_error.
    void attach(int tap_fd);
    void set(uint32_t hash_types, std::span<const uint8_t> key, std::span<const uint16_t> table,
             uint16_t unclassified) override;
    void clear() override;
    int program_fd() const { return prog_fd_; }

private:
    ::rss_slot& spare_slot();
    void fill(uint32_t mode, uint32_t hash_types, std::span<const uint8_t> key, std::span<const uint16_t> table,
              uint16_t unclassified);

    bpf_object* obj_ = nullptr;
    int prog_fd_ = -1;
    int tap_fd_ = -1;
    rss_steering* map_ = nullptr;  // the map's value, mmap'ed
    size_t map_len_ = 0;
};

}  // namespace minivmm
