#include "vmm/cli.hpp"

#include <gtest/gtest.h>

#include "tests/unit/cli_args.hpp"
#include "vmm/error.hpp"

using namespace minivmm;
using minivmm::testing::parse;

TEST(Cli, Defaults) {
    auto o = parse({"--kernel", "bz"});
    EXPECT_EQ(o.kernel, "bz");
    EXPECT_EQ(o.mem, 512ull << 20);
    EXPECT_EQ(o.cpus, 1u);
    EXPECT_FALSE(o.cmdline.has_value());
    EXPECT_TRUE(o.nets.empty());
    EXPECT_EQ(o.seccomp, SeccompMode::On);
}

TEST(Cli, Seccomp) {
    EXPECT_EQ(parse({"-k", "bz", "--seccomp=log"}).seccomp, SeccompMode::Log);
    EXPECT_EQ(parse({"-k", "bz", "--seccomp", "off"}).seccomp, SeccompMode::Off);
    EXPECT_EQ(parse({"-k", "bz", "--seccomp=on"}).seccomp, SeccompMode::On);
    EXPECT_THROW(parse({"-k", "bz", "--seccomp=strict"}), UserError);
    EXPECT_THROW(parse({"-k", "bz", "--seccomp"}), UserError);
}

TEST(Cli, Boot) {
    EXPECT_FALSE(parse({"-k", "bz"}).boot.has_value());  // the kernel file's kind decides: direct
    EXPECT_EQ(parse({"-k", "bz", "--boot=direct"}).boot, BootMode::Direct);
    EXPECT_EQ(parse({"-k", "bz", "--boot", "decompressor"}).boot, BootMode::Decompressor);
    EXPECT_THROW(parse({"-k", "bz", "--boot=pvh"}), UserError);
    EXPECT_THROW(parse({"-k", "bz", "--boot"}), UserError);
}

TEST(Cli, LongShortAndEqualsForms) {
    auto o = parse({"-k", "bz", "--initrd=rd", "--mem", "2G", "--cpus=4", "-c", "quiet", "-v", "--stats"});
    EXPECT_EQ(o.initrd, "rd");
    EXPECT_EQ(o.mem, 2ull << 30);
    EXPECT_EQ(o.cpus, 4u);
    EXPECT_EQ(*o.cmdline, "quiet");
    EXPECT_TRUE(o.verbose);
    EXPECT_TRUE(o.stats);
}

TEST(Cli, HelpAndVersionNeedNoKernel) {
    EXPECT_TRUE(parse({"--help"}).help);
    EXPECT_TRUE(parse({"-V"}).version);
}

TEST(Cli, Errors) {
    EXPECT_THROW(parse({}), UserError);
    EXPECT_THROW(parse({"--kernel"}), UserError);
    EXPECT_THROW(parse({"--kernel", "bz", "--bogus"}), UserError);
    EXPECT_THROW(parse({"--kernel", "bz", "stray"}), UserError);
    EXPECT_THROW(parse({"--kernel", "bz", "--cpus", "0"}), UserError);
    EXPECT_THROW(parse({"--kernel", "bz", "--cpus", "two"}), UserError);
    EXPECT_THROW(parse({"--kernel", "bz", "--mem", "12X"}), UserError);
}

TEST(Cli, Sizes) {
    EXPECT_EQ(parse_size("512"), 512ull << 20);  // bare = MiB, as QEMU's -m
    EXPECT_EQ(parse_size("64K"), 64ull << 10);
    EXPECT_EQ(parse_size("3584M"), 3584ull << 20);
    EXPECT_EQ(parse_size("1g"), 1ull << 30);
    EXPECT_EQ(parse_size("2GiB"), 2ull << 30);
    EXPECT_EQ(parse_size("1T"), 1ull << 40);
    EXPECT_THROW(parse_size(""), UserError);
    EXPECT_THROW(parse_size("-1M"), UserError);
    EXPECT_THROW(parse_size("1.5G"), UserError);
    EXPECT_THROW(parse_size("99999999999999999999G"), UserError);
    EXPECT_THROW(parse_size("17179869184T"), UserError);  // overflows 64 bits
}

TEST(Cli, NetSpecs) {
    auto n = parse_net("tap0");
    EXPECT_EQ(n.kind, NetSpec::Kind::Tap);
    EXPECT_EQ(n.ifname, "tap0");
    n = parse_net("tap1,mac=52:54:00:12:34:56,vhost=worker,queues=2");
    EXPECT_EQ(n.mac, (std::array<uint8_t, 6>{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}));
    EXPECT_EQ(n.vhost, NetSpec::Datapath::Worker);
    EXPECT_EQ(n.queues, 2u);
    EXPECT_FALSE(parse_net("tap0").mac);
    EXPECT_EQ(parse_net("tap0").vhost, NetSpec::Datapath::Auto);
    EXPECT_EQ(parse_net("tap0,queues=16").queues, 16u);
    EXPECT_EQ(parse_net("raw=eth1").kind, NetSpec::Kind::Raw);
    EXPECT_EQ(parse_net("macvtap=mv0,vhost=kernel").kind, NetSpec::Kind::Macvtap);
    auto o = parse({"--kernel", "bz", "--net", "a", "--net", "b"});
    EXPECT_EQ(o.nets.size(), 2u);
    for (const char* bad : {"", "tap0,", "tap0,mac", "tap0,mac=52:54:00:12:34", "tap0,mac=01:00:00:00:00:01",
                            "tap0,vhost=on", "tap0,queues=0", "tap0,speed=1", "a/b", "averyveryverylongname",
                            "tap0,vhost=off,vhost=kernel", "raw=", "tap0,queues=17", "raw=eth0,queues=2"})
        EXPECT_THROW(parse_net(bad), UserError) << bad;
}

TEST(Cli, GuestCmdlineAddsSerialConsoleOnlyWhenMissing) {
    Options o;
    EXPECT_EQ(guest_cmdline(o), "console=ttyS0");
    o.cmdline = "root=/dev/vda quiet";
    EXPECT_EQ(guest_cmdline(o), "console=ttyS0 root=/dev/vda quiet");
    o.cmdline = "console=hvc0 quiet";
    EXPECT_EQ(guest_cmdline(o), "console=hvc0 quiet");
    o.cmdline = "netconsole=x";  // not a console= parameter
    EXPECT_EQ(guest_cmdline(o), "console=ttyS0 netconsole=x");
}
