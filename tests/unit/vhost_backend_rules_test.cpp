// What a vhost backend refuses, and what it takes while a ring runs, as the
// kernel's vhost-net decides it (drivers/vhost/vhost.c): a ring's size and
// base are fixed while it has a backend (EBUSY), sizes are powers of two
// up to 32768 and bases 16-bit (EINVAL); kick fds may change while the ring
// runs. The dirty log, whose size the kernel never learns, must cover the
// memory table (EFAULT). Every test here holds for the worker and for
// vhost-net (MINIVMM_TEST_VHOST=kernel, tests/unit/vhost_rig.hpp), so the
// VMM sees the same answers from either.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <string>

#include "tests/unit/vhost_rig.hpp"
#include "vmm/error.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {
// The errno text of the InternalError call throws, or "" if it returns.
std::string refusal(const std::function<void()>& call) {
    try {
        call();
    } catch (const InternalError& e) {
        return e.what();
    }
    return "";
}
bool says(const std::string& what, int err) { return what.find(std::strerror(err)) != std::string::npos; }
}  // namespace

TEST(VhostRules, LogSmallerThanGuestMemoryIsRefused) {
    in_netns([] {
        Rig r;
        const uint64_t log = reinterpret_cast<uint64_t>(r.bitmap.data());
        EXPECT_TRUE(says(refusal([&] { r.vh->set_log_base(log, r.bitmap.size() - 1); }), EFAULT));
        EXPECT_EQ(refusal([&] { r.vh->set_log_base(log, r.bitmap.size()); }), "");
        // Nor may the memory table grow past the log.
        const uint64_t half = kMemSize / 2;
        EXPECT_TRUE(says(refusal([&] {
            r.vh->set_mem_table({{0, half, r.hva(0)}, {kMemSize, half, r.hva(half)}});
        }), EFAULT));
        // The refused table was not taken: the rings still work.
        r.start(kTx);
        auto f = make_frame(80, 44);
        r.tx_chain(0, f);
        r.publish(kTx, {0});
        auto got = r.recv_frame();
        ASSERT_TRUE(got);
        EXPECT_EQ(*got, f);
    });
}
