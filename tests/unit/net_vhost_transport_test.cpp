// virtio-net on a vhost backend behind the virtio-pci transport, under a
// fake KVM: what reaches KVM from a vCPU thread when the guest kicks in ways
// the ioeventfds do not catch. The backend and the port are stand-ins (no
// threads, no tap): only the device model and the transport are real.
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <map>

#include "tests/unit/virtio_pci_guest.hpp"
#include "vhost/net_backends.hpp"
#include "vhost/vhost.hpp"
#include "virtio/net.hpp"
#include "vmm/guest_memory.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {
struct FakePort : NetPort {
    Fd ours, theirs;
    FakePort() {
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0)
            throw std::runtime_error("socketpair");
        ours = Fd(sv[0]), theirs = Fd(sv[1]);
    }
    std::string describe() const override { return "fake"; }
    unsigned queues() const override { return 1; }
    int fd(unsigned) const override { return ours.get(); }
    bool vnet_header() const override { return true; }
};

// Takes everything and remembers the kick fds and which rings have a backend.
struct FakeVhost : VhostBackend {
    std::map<unsigned, int>& kicks;
    std::map<unsigned, int>& backends;
    FakeVhost(std::map<unsigned, int>& k, std::map<unsigned, int>& b) : kicks(k), backends(b) {}
    const char* name() const override { return "fake"; }
    void set_owner() override {}
    uint64_t get_features() override { return ~0ull; }
    void set_features(uint64_t) override {}
    void set_mem_table(const std::vector<VhostRegion>&) override {}
    void set_log_base(uint64_t, uint64_t) override {}
    void set_vring_num(unsigned, unsigned) override {}
    void set_vring_base(unsigned, unsigned) override {}
    unsigned get_vring_base(unsigned) override { return 0; }
    void set_vring_addr(unsigned, const VringAddr&) override {}
    void set_vring_kick(unsigned i, int fd) override { kicks[i] = fd; }
    void set_vring_call(unsigned, int) override {}
    void set_vring_err(unsigned, int) override {}
    void set_backend(unsigned i, int fd) override {
        if (static_cast<int>(i) == refuse_ring && fd >= 0) throw std::runtime_error("refused");
        backends[i] = fd;
    }
    int refuse_ring = -1;  // attaching this ring fails (a worker thread that cannot start)
};

uint64_t kicks_seen(int fd) {
    uint64_t n = 0;
    return ::read(fd, &n, sizeof n) == 8 ? n : 0;
}
}  // namespace

// The driver uses only the receive queue; it kicks the transmit queue
// anyway, and the receive queue with a 4-byte write. Both miss the
// ioeventfds and exit. The first must not make a kick fd and register an
// ioeventfd from the vCPU thread for a ring no backend serves; the second
// must still reach the backend.
TEST(NetVhostTransport, KicksThatExitMakeNoKvmCalls) {
    GuestMemory mem(16ull << 20);
    std::map<unsigned, int> kicks, backends;
    FakeKvm kvm;
    VirtioPci::KvmHooks hooks{kvm, kvm};
    Guest g(&hooks, std::make_unique<VirtioNet>(
                        mem, make_net_backend(std::make_unique<FakePort>(), std::make_unique<FakeVhost>(kicks, backends), "kx0"),
                        VirtioNet::Mac{2, 0, 0, 0, 0, 1}, "kx0"));
    ASSERT_TRUE(g.negotiate(virtio::kFVersion1) & virtio::kFeaturesOk);
    g.setup_queue(net::kRxQueue, 64, 0x10000);
    g.set_status(virtio::kAcknowledge | virtio::kDriver | virtio::kFeaturesOk | virtio::kDriverOk);
    ASSERT_EQ(g.status() & (virtio::kDriverOk | virtio::kNeedsReset), virtio::kDriverOk);
    ASSERT_EQ(backends.size(), 1u);
    ASSERT_TRUE(kicks.count(net::kRxQueue));
    const uint64_t bar0 = g.pci->bar_address(0);
    const auto table = kvm.ioeventfds;
    ASSERT_EQ(table.size(), 1u);
    const int calls = kvm.calls;

    EXPECT_NO_THROW(g.write(0, notify(bar0, net::kTxQueue) - bar0, net::kTxQueue, 2));
    EXPECT_EQ(kvm.ioeventfds, table) << "a kick for a ring with no backend registered an ioeventfd";
    EXPECT_EQ(kvm.calls, calls);

    EXPECT_NO_THROW(g.write(0, notify(bar0, net::kRxQueue) - bar0, net::kRxQueue, 4));
    EXPECT_EQ(kicks_seen(kicks[net::kRxQueue]), 1u) << "the kick that exited was not forwarded";
    EXPECT_EQ(kvm.calls, calls);
    g.set_status(0);
    EXPECT_TRUE(kvm.ioeventfds.empty());
}

// Attaching the pair's transmit ring fails after its receive ring was
// attached: the device needs a reset, and the reset must detach the receive
// ring too, or it would go on writing into memory the driver took back.
TEST(NetVhostTransport, ResetDetachesARingLeftAttachedByAFailedStart) {
    GuestMemory mem(16ull << 20);
    std::map<unsigned, int> kicks, backends;
    FakeKvm kvm;
    VirtioPci::KvmHooks hooks{kvm, kvm};
    auto vhost = std::make_unique<FakeVhost>(kicks, backends);
    vhost->refuse_ring = net::kTxQueue;
    Guest g(&hooks, std::make_unique<VirtioNet>(
                        mem, make_net_backend(std::make_unique<FakePort>(), std::move(vhost), "kf0"),
                        VirtioNet::Mac{2, 0, 0, 0, 0, 1}, "kf0"));
    ASSERT_TRUE(g.negotiate(virtio::kFVersion1) & virtio::kFeaturesOk);
    g.setup_queue(net::kRxQueue, 64, 0x10000);
    g.setup_queue(net::kTxQueue, 64, 0x20000);
    g.set_status(virtio::kAcknowledge | virtio::kDriver | virtio::kFeaturesOk | virtio::kDriverOk);
    EXPECT_TRUE(g.status() & virtio::kNeedsReset);
    ASSERT_GE(backends[net::kRxQueue], 0) << "the receive ring was never attached";
    g.set_status(0);
    EXPECT_EQ(backends[net::kRxQueue], -1) << "reset left the receive ring attached";
}
