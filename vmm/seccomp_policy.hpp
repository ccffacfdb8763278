// How seccomp_policy.cpp writes a thread kind's allowlist down, and how
// seccomp.cpp reads it: a thin layer over a libseccomp filter context.
#pragma once
#include <seccomp.h>

#include <cstdint>
#include <initializer_list>
#include <set>

#include "vmm/seccomp.hpp"

namespace minivmm {

// One condition on argument n (0-based) of a call.
scmp_arg_cmp arg_eq(unsigned n, uint64_t value);
// (argument & mask) == value.
scmp_arg_cmp arg_masked(unsigned n, uint64_t mask, uint64_t value);

class Allowlist {
public:
    explicit Allowlist(scmp_filter_ctx ctx) : ctx_(ctx) {}
    // The call, with any arguments.
    void allow(int nr);
    // The call when all of these hold; several allow()s of one call: any.
    void allow(int nr, std::initializer_list<scmp_arg_cmp> args);
    // ioctl with this request number, on any fd. The kernel reads the
    // request as 32 bits, so the upper half of the register is not looked at.
    void allow_ioctl(unsigned long request);
    // The call fails with errno err instead (not counted as allowed).
    void fail(int nr, int err);

    unsigned calls() const { return static_cast<unsigned>(calls_.size()); }
    unsigned ioctls() const { return ioctls_; }

private:
    void add(uint32_t action, int nr, std::initializer_list<scmp_arg_cmp> args);
    scmp_filter_ctx ctx_;
    std::set<int> calls_;
    unsigned ioctls_ = 0;
};

// seccomp_policy.cpp: what a thread of this kind may call.
void write_policy(ThreadKind kind, Allowlist& list);

}  // namespace minivmm
