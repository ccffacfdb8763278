// The control socket on the command line: --api-sock, and the requests
// minivmm ctl makes of its arguments; and ctl against a path nothing serves.
#include "vmm/ctl.hpp"

#include <gtest/gtest.h>

#include "tests/unit/cli_args.hpp"
#include "vmm/cli.hpp"
#include "vmm/error.hpp"

using namespace minivmm;
using minivmm::testing::parse;
using json = nlohmann::ordered_json;

namespace {
// run_ctl takes the words after "minivmm ctl".
int ctl(std::vector<std::string> args) {
    return minivmm::testing::with_argv(std::move(args), [](int argc, char** argv) { return run_ctl(argc - 1, argv + 1); });
}
}  // namespace

TEST(Ctl, ApiSockOption) {
    EXPECT_FALSE(parse({"-k", "bz"}).api_sock.has_value());
    EXPECT_EQ(parse({"-k", "bz", "--api-sock", "/run/vm.sock"}).api_sock, "/run/vm.sock");
    EXPECT_EQ(parse({"-k", "bz", "--api-sock=rel.sock"}).api_sock, "rel.sock");
    EXPECT_THROW(parse({"-k", "bz", "--api-sock="}), UserError);
    EXPECT_THROW(parse({"-k", "bz", "--api-sock"}), UserError);
}

TEST(Ctl, RequestFromArguments) {
    EXPECT_EQ(ctl_request({"status"}), json::parse(R"({"cmd":"status"})"));
    EXPECT_EQ(ctl_request({"stats", "nic=net1"}), json::parse(R"({"cmd":"stats","nic":"net1"})"));
    // Values are strings; an empty one too (the server judges what it means).
    EXPECT_EQ(ctl_request({"stats", "nic="}), json::parse(R"({"cmd":"stats","nic":""})"));
    // Unknown commands go to the server, whose error reply says so.
    EXPECT_EQ(ctl_request({"frobnicate"}), json::parse(R"({"cmd":"frobnicate"})"));
    // snapshot's file needs no key.
    EXPECT_EQ(ctl_request({"snapshot", "/tmp/vm.snap", "then=stop"}),
              json::parse(R"({"cmd":"snapshot","file":"/tmp/vm.snap","then":"stop"})"));
    EXPECT_EQ(ctl_request({"snapshot"}), json::parse(R"({"cmd":"snapshot"})"));
    EXPECT_THROW(ctl_request({}), UserError);
    EXPECT_THROW(ctl_request({""}), UserError);
    EXPECT_THROW(ctl_request({"stats", "nic"}), UserError);
    EXPECT_THROW(ctl_request({"stats", "=net0"}), UserError);
    EXPECT_THROW(ctl_request({"stats", "nic=a", "nic=b"}), UserError);
    EXPECT_THROW(ctl_request({"stats", "cmd=quit"}), UserError);
}

TEST(Ctl, NothingServingIsOneLineAndStatus1) {
    ::testing::internal::CaptureStderr();
    EXPECT_EQ(ctl({"/nonexistent/minivmm.sock", "status"}), 1);
    std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(err.find('\n'), err.size() - 1) << err;
    EXPECT_NE(err.find("minivmm: ctl: /nonexistent/minivmm.sock: no such socket"), std::string::npos) << err;
    ::testing::internal::CaptureStderr();
    EXPECT_EQ(ctl({"/tmp"}), 1);
    err = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("expected a socket path and a command"), std::string::npos) << err;
}
