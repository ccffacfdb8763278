// Quiescing and loading a NIC served by a vhost backend, against a stand-in
// that answers as vhost-net does (no ring size or base while a ring has a
// backend) and logs the calls: the order vhost-net needs (detach, then read
// the base; set the base, then attach), the positions in virtio's terms,
// and a kick once a ring goes on, for what the driver queued before.
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/unit/virtio_pci_guest.hpp"
#include "vhost/net_backends.hpp"
#include "vhost/vhost.hpp"
#include "virtio/net.hpp"
#include "vmm/guest_memory.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {
struct PairPort : NetPort {
    Fd ours, theirs;
    PairPort() {
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0)
            throw std::runtime_error("socketpair");
        ours = Fd(sv[0]), theirs = Fd(sv[1]);
    }
    std::string describe() const override { return "pair"; }
    unsigned queues() const override { return 1; }
    int fd(unsigned) const override { return ours.get(); }
    bool vnet_header() const override { return true; }
};

// vhost-net's rules for bases, and a log of the ring calls.
struct LoggingVhost : VhostBackend {
    std::vector<std::string>& log;
    unsigned base[2] = {}, kick[2] = {};
    int backend[2] = {-1, -1};
    explicit LoggingVhost(std::vector<std::string>& l) : log(l) {}
    const char* name() const override { return "kernel"; }
    void set_owner() override {}
    uint64_t get_features() override { return ~0ull; }
    void set_features(uint64_t) override {}
    void set_mem_table(const std::vector<VhostRegion>&) override {}
    void set_log_base(uint64_t, uint64_t) override {}
    void set_vring_num(unsigned, unsigned) override {}
    void set_vring_base(unsigned i, unsigned b) override {
        if (backend[i] >= 0) throw internal_error("SET_VRING_BASE", EBUSY);
        base[i] = b;
        log.push_back("base " + std::to_string(i) + " " + std::to_string(b));
    }
    unsigned get_vring_base(unsigned i) override {
        log.push_back("get " + std::to_string(i));
        return base[i];
    }
    void set_vring_addr(unsigned, const VringAddr&) override {}
    void set_vring_kick(unsigned i, int fd) override { kick[i] = static_cast<unsigned>(fd); }
    void set_vring_call(unsigned, int) override {}
    void set_vring_err(unsigned, int) override {}
    void set_backend(unsigned i, int fd) override {
        backend[i] = fd;
        log.push_back("backend " + std::to_string(i) + (fd < 0 ? " off" : " on"));
    }
};

struct VhostNic {
    std::vector<std::string> log;
    LoggingVhost* vhost;
    FakeKvm kvm;
    VirtioPci::KvmHooks hooks{kvm, kvm};
    std::unique_ptr<Guest> g;
    explicit VhostNic(GuestMemory& mem) {
        auto v = std::make_unique<LoggingVhost>(log);
        vhost = v.get();
        g = std::make_unique<Guest>(
            &hooks, std::make_unique<VirtioNet>(mem, make_net_backend(std::make_unique<PairPort>(), std::move(v), "kv0"),
                                                VirtioNet::Mac{2, 0, 0, 0, 0, 1}, "kv0"));
    }
    // Kicks waiting on ring i's kick eventfd.
    uint64_t kicks(unsigned i) {
        uint64_t n = 0;
        return ::read(static_cast<int>(vhost->kick[i]), &n, sizeof n) == 8 ? n : 0;
    }
    std::vector<uint8_t> save() {
        state::Writer w;
        g->pci->save(w);
        return w.take();
    }
};
}  // namespace

TEST(NetVhostState, QuiesceResumeAndLoadSpeakVhostNetsOrder) {
    GuestMemory mem(16ull << 20);
    VhostNic a(mem);
    ASSERT_TRUE(a.g->negotiate(virtio::kFVersion1) & virtio::kFeaturesOk);
    a.g->setup_queue(0, 8, 0x10000);
    a.g->setup_queue(1, 8, 0x20000);
    a.g->set_status(virtio::kAcknowledge | virtio::kDriver | virtio::kFeaturesOk | virtio::kDriverOk);
    ASSERT_EQ(a.vhost->backend[0], a.vhost->backend[1]);
    ASSERT_GE(a.vhost->backend[0], 0);
    a.vhost->base[0] = 5, a.vhost->base[1] = 7;  // where the rings got to
    a.log.clear();
    a.g->pci->quiesce();
    EXPECT_EQ(a.log, (std::vector<std::string>{"backend 0 off", "get 0", "backend 1 off", "get 1"}));
    auto bytes = a.save();
    a.kicks(0), a.kicks(1);
    a.log.clear();
    a.g->pci->resume();
    EXPECT_EQ(a.log, (std::vector<std::string>{"base 0 5", "backend 0 on", "base 1 7", "backend 1 on"}));
    EXPECT_EQ(a.kicks(0), 1u);
    EXPECT_EQ(a.kicks(1), 1u);

    // Loaded on another NIC: the rings start at the saved positions.
    VhostNic b(mem);
    state::Reader r(bytes, "test");
    b.g->pci->load(r, mem);
    r.expect_end();
    EXPECT_EQ(b.log, (std::vector<std::string>{"base 0 5", "base 1 7", "backend 0 on", "backend 1 on"}));
    EXPECT_EQ(b.kicks(0), 1u);
    EXPECT_EQ(b.kicks(1), 1u);
    b.g->pci->quiesce();
    EXPECT_EQ(b.save(), bytes);
}
