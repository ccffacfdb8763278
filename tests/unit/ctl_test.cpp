// The control socket on the command line: --api-sock, and the requests
// minivmm ctl makes of its arguments; and ctl against a path nothing serves.
#include "vmm/ctl.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/unit/cli_args.hpp"
#include "vmm/cli.hpp"
#include "vmm/error.hpp"
#include "vmm/fd.hpp"

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

namespace {
// A control socket that takes one request with its file, writes "new" into
// that file, and answers ok or not.
struct OneShotServer {
    std::string dir, path;
    Fd listener;
    std::thread t;
    explicit OneShotServer(bool ok) {
        char tmpl[] = "/tmp/minivmm-ctl-XXXXXX";
        dir = mkdtemp(tmpl);
        path = dir + "/api.sock";
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
        listener = Fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        EXPECT_EQ(bind(listener.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
        EXPECT_EQ(listen(listener.get(), 1), 0);
        t = std::thread([this, ok] {
            Fd c(accept(listener.get(), nullptr, nullptr));
            char buf[4096];
            alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
            iovec io{buf, sizeof buf};
            msghdr m{};
            m.msg_iov = &io;
            m.msg_iovlen = 1;
            m.msg_control = control;
            m.msg_controllen = sizeof control;
            if (recvmsg(c.get(), &m, 0) <= 0) return;
            cmsghdr* h = CMSG_FIRSTHDR(&m);
            if (h && h->cmsg_type == SCM_RIGHTS) {
                int fd;
                std::memcpy(&fd, CMSG_DATA(h), sizeof fd);
                Fd f(fd);
                [[maybe_unused]] ssize_t n = write(f.get(), "new", 3);
            }
            std::string reply = ok ? "{\"ok\":true}\n" : "{\"ok\":false,\"error\":\"snapshot failed\"}\n";
            [[maybe_unused]] ssize_t n = write(c.get(), reply.data(), reply.size());
        });
    }
    ~OneShotServer() {
        t.join();
        std::system(("rm -rf '" + dir + "'").c_str());
    }
};

std::string contents(const std::string& p) {
    std::ifstream f(p);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

size_t files_in(const std::string& dir) {
    size_t n = 0;
    for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(dir)) n++;
    return n;
}
}  // namespace

// A snapshot replaces FILE only once minivmm says it is complete: a failed
// one leaves the old FILE whole, and no partial file beside it.
TEST(Ctl, SnapshotReplacesTheFileOnlyOnSuccess) {
    {
        OneShotServer s(false);
        std::string file = s.dir + "/vm.snap";
        std::ofstream(file) << "old";
        ::testing::internal::CaptureStdout();
        EXPECT_EQ(ctl({s.path, "snapshot", file}), 1);
        ::testing::internal::GetCapturedStdout();
        EXPECT_EQ(contents(file), "old");
        EXPECT_EQ(files_in(s.dir), 2u) << "the partial file was left (socket and vm.snap expected)";
    }
    {
        OneShotServer s(true);
        std::string file = s.dir + "/vm.snap";
        std::ofstream(file) << "old";
        ::testing::internal::CaptureStdout();
        EXPECT_EQ(ctl({s.path, "snapshot", file}), 0);
        ::testing::internal::GetCapturedStdout();
        EXPECT_EQ(contents(file), "new");
        EXPECT_EQ(files_in(s.dir), 2u);
    }
}
