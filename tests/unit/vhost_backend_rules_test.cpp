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

TEST(VhostRules, RingSizeAndBaseAreFixedWhileTheRingHasABackend) {
    in_netns([] {
        Rig r;
        r.start(kTx);
        std::string num = refusal([&] { r.vh->set_vring_num(kTx, 2 * kQSize); });
        std::string base = refusal([&] { r.vh->set_vring_base(kTx, 5); });
        EXPECT_TRUE(says(num, EBUSY)) << "SET_VRING_NUM on a running ring: '" << num << "'";
        EXPECT_TRUE(says(base, EBUSY)) << "SET_VRING_BASE on a running ring: '" << base << "'";
        // The ring went on as it was.
        ASSERT_NO_FATAL_FAILURE(r.expect_tx(0, make_frame(90, 40)));
        ASSERT_TRUE(r.ring[kTx].wait_used(1));

        // Without its backend, the ring is the VMM's to set again.
        r.vh->set_backend(kTx, -1);
        EXPECT_EQ(r.vh->get_vring_base(kTx), 1u);
        EXPECT_NO_THROW(r.vh->set_vring_num(kTx, kQSize));
        EXPECT_NO_THROW(r.vh->set_vring_base(kTx, 1));
        r.start(kTx);
        ASSERT_NO_FATAL_FAILURE(r.expect_tx(1, make_frame(91, 41)));
    });
}

TEST(VhostRules, BadRingSizesAndBasesAreRefused) {
    in_netns([] {
        Rig r;
        for (unsigned num : {0u, 3u, 24u, 65536u, 0x80000000u})
            EXPECT_TRUE(says(refusal([&] { r.vh->set_vring_num(kRx, num); }), EINVAL)) << "size " << num;
        EXPECT_TRUE(says(refusal([&] { r.vh->set_vring_base(kRx, 0x10000); }), EINVAL));
        EXPECT_EQ(refusal([&] { r.vh->set_vring_num(kRx, 32768); }), "");
        EXPECT_EQ(refusal([&] { r.vh->set_vring_num(kRx, kQSize); }), "");
    });
}

// A guest's size, taken while the ring ran, would move where the device
// logs avail_event: here 4 KiB entries past the used ring, a page the
// device never wrote.
TEST(VhostRules, SizeRefusedWhileRunningLeavesTheLoggedAvailEventWhereItIs) {
    in_netns([] {
        Rig r(Options{.features = virtio::kFVersion1 | virtio::kFEventIdx | vhost::kFLogAll, .log = true});
        r.start(kTx);
        EXPECT_TRUE(says(refusal([&] { r.vh->set_vring_num(kTx, 4096); }), EBUSY));
        r.tx_chain(0, make_frame(64, 42));
        r.publish(kTx, {0});
        ASSERT_TRUE(r.recv_frame());
        ASSERT_TRUE(r.ring[kTx].wait_used(1));
        ASSERT_TRUE(r.ring[kTx].wait_avail_event(1)) << "avail_event " << r.ring[kTx].avail_event();
        r.vh->set_backend(kTx, -1);  // the bitmap is read with the ring's thread gone
        EXPECT_EQ(r.dirty_pages(), (std::set<uint64_t>{kTxRing.used >> 12}));
    });
}

// A new kick fd while the ring waits for a kick: kicks on it must reach the
// ring (a worker still polling the old fd never sees them).
TEST(VhostRules, KickFdChangedWhileTheRingRuns) {
    in_netns([] {
        Fd kick = make_eventfd();  // closed after the backend that polls it
        Rig r;
        r.start(kTx);
        std::this_thread::sleep_for(std::chrono::milliseconds(50));  // idle, waiting for a kick
        r.vh->set_vring_kick(kTx, kick.get());
        auto f = make_frame(70, 43);
        r.tx_chain(0, f);
        r.ring[kTx].offer(0);
        uint64_t one = 1;
        ASSERT_EQ(::write(kick.get(), &one, sizeof one), 8);
        auto got = r.recv_frame();
        ASSERT_TRUE(got) << "the kick on the new fd was not seen";
        EXPECT_EQ(*got, f);
    });
}

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
        ASSERT_NO_FATAL_FAILURE(r.expect_tx(0, make_frame(80, 44)));
    });
}
