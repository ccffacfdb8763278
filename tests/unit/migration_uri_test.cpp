// Migration addresses: what parses, what is refused with a line naming
// the fault, and a connection made and taken over unix and TCP loopback.
#include "vmm/migration_uri.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include "tests/unit/cli_args.hpp"
#include "tests/unit/test_helpers.hpp"
#include "vmm/cli.hpp"
#include "vmm/error.hpp"

using namespace minivmm;
using minivmm::testing::error_of;
using minivmm::testing::parse;

TEST(MigrationUri, Parses) {
    MigrationUri u = parse_migration_uri("unix:/run/mig.sock");
    EXPECT_EQ(u.kind, MigrationUri::Kind::Unix);
    EXPECT_EQ(u.path, "/run/mig.sock");
    u = parse_migration_uri("tcp:10.0.0.2:4444");
    EXPECT_EQ(u.kind, MigrationUri::Kind::Tcp);
    EXPECT_EQ(u.host, "10.0.0.2");
    EXPECT_EQ(u.port, 4444);
    u = parse_migration_uri("tcp:[fe80::1]:80");
    EXPECT_EQ(u.host, "fe80::1");
    u = parse_migration_uri("tcp::4444");  // any address, for --incoming
    EXPECT_EQ(u.host, "");
    EXPECT_EQ(parse_migration_uri("tcp:host.example:1").host, "host.example");
}

TEST(MigrationUri, RefusesWithTheReason) {
    EXPECT_NE(error_of([] { parse_migration_uri("unix:"); }).find("no path"), std::string::npos);
    EXPECT_NE(error_of([] { parse_migration_uri("unix:" + std::string(200, 'a')); }).find("longer"), std::string::npos);
    EXPECT_NE(error_of([] { parse_migration_uri("tcp:h:0"); }).find("1 to 65535"), std::string::npos);
    EXPECT_NE(error_of([] { parse_migration_uri("tcp:h:70000"); }).find("1 to 65535"), std::string::npos);
    for (const char* bad : {"tcp:h", "tcp:h:", "tcp:h:port", "udp:h:1", "/run/x.sock", "", "tcp:[::1:1"})
        EXPECT_NE(error_of([&] { parse_migration_uri(bad); }).find("unix:PATH or tcp:HOST:PORT"), std::string::npos)
            << bad;
}

TEST(MigrationUri, UnixListenerIsOwnerOnlyAndGoneOnceTaken) {
    char dir[] = "/tmp/minivmm-mig-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir));
    MigrationUri u = parse_migration_uri(std::string("unix:") + dir + "/in.sock");
    Fd l = listen_migration(u);
    struct stat st;
    ASSERT_EQ(stat(u.path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_THROW(listen_migration(u), UserError);  // taken
    std::thread client([&] {
        Fd c = connect_migration(u);
        EXPECT_EQ(write(c.get(), "hi", 2), 2);
    });
    Fd s = accept_migration(std::move(l), u);
    client.join();
    char buf[2];
    EXPECT_EQ(read(s.get(), buf, 2), 2);
    EXPECT_NE(stat(u.path.c_str(), &st), 0) << "the path stays after the connection was taken";
    EXPECT_NE(error_of([&] { connect_migration(u); }).find("is the destination waiting"), std::string::npos);
    rmdir(dir);
}

TEST(MigrationUri, TcpLoopback) {
    // A port of the ephemeral range, tried until one is free.
    for (int attempt = 0; attempt < 20; attempt++) {
        MigrationUri u = parse_migration_uri("tcp:127.0.0.1:" + std::to_string(40000 + (getpid() + attempt * 7) % 20000));
        Fd l;
        try {
            l = listen_migration(u);
        } catch (const UserError&) {
            continue;
        }
        std::thread client([&] {
            Fd c = connect_migration(u);
            EXPECT_EQ(write(c.get(), "x", 1), 1);
        });
        Fd s = accept_migration(std::move(l), u);
        client.join();
        char b;
        EXPECT_EQ(read(s.get(), &b, 1), 1);
        return;
    }
    FAIL() << "no free loopback port";
}

TEST(MigrationUri, RestoreAndIncomingOptions) {
    Options o = parse({"--restore", "vm.snap", "--mem", "1G"});
    EXPECT_EQ(o.restore, "vm.snap");
    o = parse({"--incoming", "unix:/tmp/in.sock"});
    EXPECT_EQ(o.incoming, "unix:/tmp/in.sock");
    EXPECT_NE(error_of([] { parse({"--incoming", "tcp:x"}); }).find("unix:PATH or tcp:HOST:PORT"), std::string::npos);
    EXPECT_NE(error_of([] { parse({"--restore", "a", "--incoming", "unix:/b"}); }).find("one or the other"),
              std::string::npos);
    EXPECT_NE(error_of([] { parse({"--restore", "a", "--kernel", "bz"}); }).find("--kernel has nothing to boot"),
              std::string::npos);
    EXPECT_NE(error_of([] { parse({"--incoming", "unix:/b", "--initrd", "i"}); }).find("--initrd"), std::string::npos);
    EXPECT_THROW(parse({"--restore", ""}), UserError);
}
