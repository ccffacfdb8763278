// A device's counters as data, and the --stats lines printed from them: the
// control socket's stats and --stats/SIGUSR1 read one source.
#include "virtio/queue_stats.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

using namespace minivmm;

namespace {
std::string printed(const DeviceStats& s) {
    char* buf = nullptr;
    size_t len = 0;
    std::FILE* f = open_memstream(&buf, &len);
    print_device_stats(f, s);
    std::fclose(f);
    std::string out(buf, len);
    std::free(buf);
    return out;
}
}  // namespace

TEST(DeviceStats, SnapshotCopiesEveryCounter) {
    QueueStats q;
    q.packets = 3, q.bytes = 1500, q.notifications = 2, q.interrupts = 4, q.errors = 1;
    QueueCounters c = q.snapshot("tx1");
    EXPECT_EQ(c.name, "tx1");
    EXPECT_TRUE(c.visible);
    EXPECT_EQ(c.packets, 3u);
    EXPECT_EQ(c.bytes, 1500u);
    EXPECT_EQ(c.notifications, 2u);
    EXPECT_EQ(c.interrupts, 4u);
    EXPECT_EQ(c.errors, 1u);
}

TEST(DeviceStats, PrintedFormIsTheData) {
    QueueStats rx;
    rx.packets = 7, rx.bytes = 900, rx.interrupts = 5;
    DeviceStats s{"net0", "tap tap0", "kernel", 2, 1, {}};
    s.queues.push_back(rx.snapshot("rx0"));
    s.queues.push_back(QueueCounters{"tx0", false});
    EXPECT_EQ(printed(s),
              "minivmm: net0 (tap tap0, vhost=kernel, 2 queue pairs, 1 in use):\n"
              "  rx0: 7 packets, 900 bytes, 0 notifications, 5 interrupts, 0 errors\n"
              "  tx0: served by the kernel's vhost-net (its counters are not visible here)\n");
    s.pairs = 1;
    s.queues.clear();
    EXPECT_EQ(printed(s), "minivmm: net0 (tap tap0, vhost=kernel, 1 queue pair, 1 in use):\n");
}
