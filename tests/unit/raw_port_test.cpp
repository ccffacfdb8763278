// The raw packet socket port (RawSocket): its errors, and what virtio-net
// offers the guest on a port that carries no virtio-net headers.
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <thread>

#include "tests/unit/netns_helpers.hpp"
#include "vhost/net_backends.hpp"
#include "vhost/ports/raw_socket.hpp"
#include "virtio/net.hpp"
#include "vmm/error.hpp"
#include "vmm/guest_memory.hpp"

using namespace minivmm;
using namespace minivmm::testing;

TEST(RawPort, MissingInterfaceIsOneClearError) {
    in_netns([] {
        try {
            RawSocket s("nosuch0");
            ADD_FAILURE() << "opened a raw socket on a missing interface";
        } catch (const UserError& e) {
            EXPECT_NE(std::string(e.what()).find("no such interface"), std::string::npos) << e.what();
        }
    });
}

TEST(RawPort, DeviceOffersNoOffloadsWithoutHeaders) {
    in_netns([] {
        GuestMemory mem(16ull << 20);
        VirtioNet raw(mem, make_net_backend(std::make_unique<RawSocket>("lo"), nullptr, "net0"), {0x52, 0x54, 0, 0, 0, 1});
        uint64_t offloads = net::kCsum | net::kGuestCsum | net::kHostTso4 | net::kGuestTso4 | net::kHostTso6 |
                            net::kGuestTso6 | net::kHostEcn | net::kGuestEcn;
        EXPECT_EQ(raw.features() & offloads, 0u);
        EXPECT_TRUE(raw.features() & net::kMrgRxbuf);
        EXPECT_TRUE(raw.features() & net::kMac);
    });
}

TEST(RawPort, WithoutCapNetRawIsOneClearError) {
    in_netns([] {
        // Capabilities are per thread: drop CAP_NET_RAW in this one only.
        std::thread([] {
            __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
            __user_cap_data_struct d[2]{};
            ASSERT_EQ(::syscall(SYS_capget, &h, d), 0);
            d[0].effective &= ~(1u << CAP_NET_RAW);
            ASSERT_EQ(::syscall(SYS_capset, &h, d), 0);
            try {
                RawSocket s("lo");
                ADD_FAILURE() << "a raw socket without CAP_NET_RAW";
            } catch (const UserError& e) {
                EXPECT_NE(std::string(e.what()).find("no permission"), std::string::npos) << e.what();
            }
        }).join();
    });
}
