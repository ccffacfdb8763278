// The control socket's listening end and its server loop, without KVM: a
// fake target behind a real unix socket in a temporary directory. The
// served cases run the loop in a forked child under the API thread's
// seccomp filter, so a call missing from its list fails them.
#include "vmm/api_socket.hpp"

#include <fcntl.h>
#include <signal.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "vmm/api_protocol.hpp"
#include "vmm/error.hpp"
#include "vmm/fd.hpp"
#include "vmm/seccomp.hpp"

using namespace minivmm;
using json = nlohmann::ordered_json;

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char t[] = "/tmp/minivmm-api-XXXXXX";
        if (!mkdtemp(t)) throw std::runtime_error("mkdtemp");
        path = t;
    }
    ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

bool exists(const std::string& p) {
    struct stat st;
    return lstat(p.c_str(), &st) == 0;
}

Fd connect_to(const std::string& path) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    Fd s(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return Fd();
    return s;
}

void send_all(const Fd& s, const std::string& data) {
    for (size_t off = 0; off < data.size();) {
        ssize_t n = send(s.get(), data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (n <= 0) throw std::runtime_error("send");
        off += static_cast<size_t>(n);
    }
}

// One reply line, or "" after 5 s.
std::string read_line(const Fd& s) {
    std::string line;
    char c;
    for (;;) {
        pollfd p{s.get(), POLLIN, 0};
        if (poll(&p, 1, 5000) != 1) return "";
        if (read(s.get(), &c, 1) != 1) return line;
        if (c == '\n') return line;
        line += c;
    }
}

// Answers status; quit writes the stop eventfd, as the Machine's stop does.
struct FakeTarget : ApiTarget {
    int stop_fd;
    explicit FakeTarget(int fd) : stop_fd(fd) {}
    json status() override { return {{"state", "running"}}; }
    // "big": a 2 KiB reply, so a few hundred requests pass the server's
    // bound on replies waiting for one client.
    json stats(const std::string& nic) override {
        if (nic == "big") return {{"nics", json::array()}, {"pad", std::string(2048, 'p')}};
        return {{"nics", json::array()}};
    }
    json pause() override { return {{"state", "paused"}}; }
    json resume() override { return {{"state", "running"}}; }
    json quit() override {
        uint64_t one = 1;
        [[maybe_unused]] ssize_t n = write(stop_fd, &one, sizeof one);
        return {{"state", "stopping"}};
    }
    json migrate(Fd, const std::string&) override { return {{"state", "migrated"}}; }
    // Writes the name into the passed file: what arrived is what was sent.
    json snapshot(Fd file, const std::string& name, bool) override {
        std::string text = "snap:" + name;
        return {{"written", write(file.get(), text.data(), text.size())}};
    }
};

// A request with an fd attached (SCM_RIGHTS), as minivmm ctl sends snapshot.
void send_with_fd(const Fd& s, const std::string& line, int fd) {
    iovec io{const_cast<char*>(line.data()), line.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr m{};
    m.msg_iov = &io;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof control;
    cmsghdr* h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(h), &fd, sizeof fd);
    ASSERT_EQ(sendmsg(s.get(), &m, MSG_NOSIGNAL), ssize_t(line.size()));
}

// Serves path in a forked child, on a thread under the API filter; returns
// the child's pid. The child exits 0 when serve() returns.
pid_t serve_in_child(const std::string& path) {
    std::fflush(stderr);
    pid_t pid = fork();
    if (pid != 0) return pid;
    try {
        Fd stop(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        ApiSocket sock(path);
        FakeTarget target(stop.get());
        seccomp_prepare(SeccompMode::On);
        std::thread t([&] {
            enter_thread(ThreadKind::Api, "API");
            sock.serve(stop.get(), target);
        });
        t.join();
        _exit(0);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "child: %s\n", e.what());
        _exit(3);
    }
}

Fd wait_connect(const std::string& path) {
    for (int i = 0; i < 500; i++) {
        if (Fd s = connect_to(path)) return s;
        usleep(10000);
    }
    return Fd();
}

int wait_child(pid_t pid) {
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

}  // namespace

TEST(ApiSocket, CreatedOwnerOnlyAndRemoved) {
    TempDir d;
    std::string p = d.path + "/api.sock";
    {
        mode_t old = umask(0);  // a permissive umask must not leak into the socket's mode
        ApiSocket s(p);
        umask(old);
        struct stat st;
        ASSERT_EQ(lstat(p.c_str(), &st), 0);
        EXPECT_TRUE(S_ISSOCK(st.st_mode));
        EXPECT_EQ(st.st_mode & 0777, 0600u);
        EXPECT_EQ(umask(old), old) << "the process umask was not restored";
    }
    EXPECT_FALSE(exists(p)) << "the socket outlived its ApiSocket";
}

TEST(ApiSocket, RefusesWhatIsNotAStaleSocket) {
    TempDir d;
    std::string file = d.path + "/file";
    close(open(file.c_str(), O_CREAT | O_WRONLY, 0600));
    EXPECT_THROW(
        {
            try {
                ApiSocket s(file);
            } catch (const UserError& e) {
                EXPECT_NE(std::string(e.what()).find("exists and is not a socket"), std::string::npos) << e.what();
                throw;
            }
        },
        UserError);
    EXPECT_TRUE(exists(file)) << "a refused path was removed";

    std::string live = d.path + "/live";
    ApiSocket first(live);
    EXPECT_THROW(
        {
            try {
                ApiSocket second(live);
            } catch (const UserError& e) {
                EXPECT_NE(std::string(e.what()).find("serves that socket"), std::string::npos) << e.what();
                throw;
            }
        },
        UserError);
    EXPECT_TRUE(exists(live));

    EXPECT_THROW(ApiSocket(d.path + "/" + std::string(120, 'x')), UserError);
    EXPECT_THROW(ApiSocket(d.path + "/missing/dir/s"), UserError);
    EXPECT_THROW(ApiSocket(d.path + "/"), UserError);
}

TEST(ApiSocket, StaleSocketIsReplaced) {
    TempDir d;
    std::string p = d.path + "/stale";
    {
        // A socket bound and closed, as a killed process leaves it.
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strncpy(a.sun_path, p.c_str(), sizeof a.sun_path - 1);
        Fd s(socket(AF_UNIX, SOCK_STREAM, 0));
        ASSERT_EQ(bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    }
    ASSERT_TRUE(exists(p));
    ApiSocket s(p);
    EXPECT_TRUE(connect_to(p));
}

TEST(ApiSocket, ServesUnderItsFilterAndRemovesThePathOnQuit) {
    TempDir d;
    std::string p = d.path + "/api.sock";
    pid_t pid = serve_in_child(p);
    Fd silent = wait_connect(p);  // connects and never sends
    ASSERT_TRUE(silent);
    Fd a = connect_to(p);
    ASSERT_TRUE(a);
    // Several requests in one write, then garbage: one reply each, in order.
    send_all(a, "{\"cmd\":\"status\"}\n{\"cmd\":\"pause\"}\nnot json\n");
    EXPECT_EQ(json::parse(read_line(a))["state"], "running");
    EXPECT_EQ(json::parse(read_line(a))["state"], "paused");
    EXPECT_EQ(json::parse(read_line(a))["ok"], false);
    // A request split across writes.
    send_all(a, "{\"cmd\":");
    usleep(20000);
    send_all(a, "\"resume\"}\n");
    EXPECT_EQ(json::parse(read_line(a))["state"], "running");
    // Over the limit: one error reply for the whole line, and the next line served.
    send_all(a, std::string(3 * kMaxRequestLine, 'x') + "\n{\"cmd\":\"status\"}\n");
    json over = json::parse(read_line(a));
    EXPECT_EQ(over["ok"], false);
    EXPECT_NE(over["error"].get<std::string>().find("longer than"), std::string::npos);
    EXPECT_EQ(json::parse(read_line(a))["state"], "running");
    // A file passed with snapshot reaches the target; without one, an error.
    send_all(a, "{\"cmd\":\"snapshot\",\"file\":\"x\"}\n");
    EXPECT_NE(json::parse(read_line(a))["error"].get<std::string>().find("needs a file passed"), std::string::npos);
    int pipe_fds[2];
    ASSERT_EQ(pipe(pipe_fds), 0);
    Fd pipe_read(pipe_fds[0]), pipe_write(pipe_fds[1]);
    send_with_fd(a, "{\"cmd\":\"snapshot\",\"file\":\"vm.snap\"}\n", pipe_write.get());
    pipe_write = Fd();
    EXPECT_EQ(json::parse(read_line(a))["written"], 12);
    char got[32] = {};
    EXPECT_EQ(read(pipe_read.get(), got, sizeof got), 12);
    EXPECT_STREQ(got, "snap:vm.snap");
    // A client that closes its side after an unterminated request still gets the reply.
    Fd b = connect_to(p);
    send_all(b, "{\"cmd\":\"status\"}");
    shutdown(b.get(), SHUT_WR);
    EXPECT_EQ(json::parse(read_line(b))["ok"], true);
    // A client that went away without reading its reply costs the server nothing.
    {
        Fd gone = connect_to(p);
        send_all(gone, "{\"cmd\":\"status\"}\n");
    }
    // quit: the reply comes back, then the server ends and the path is gone.
    Fd c = connect_to(p);
    send_all(c, "{\"cmd\":\"quit\"}\n");
    EXPECT_EQ(json::parse(read_line(c))["state"], "stopping");
    EXPECT_EQ(wait_child(pid), 0) << "the server did not end cleanly (2: a call its filter lacks)";
    EXPECT_FALSE(exists(p));
}

// Requests whose replies pass the bound on what waits for one client: the
// rest wait in the socket, and every one is answered in order, the
// unterminated last one of a client that closed its side included.
TEST(ApiSocket, RepliesBeyondTheBoundAllArrive) {
    TempDir d;
    std::string p = d.path + "/api.sock";
    pid_t pid = serve_in_child(p);
    Fd a = wait_connect(p);
    ASSERT_TRUE(a);
    const int n = 1000;  // 2 MB of replies to 28 KB of requests
    std::string reqs;
    for (int i = 0; i < n; i++) reqs += "{\"cmd\":\"stats\",\"nic\":\"big\"}\n";
    send_all(a, reqs + "{\"cmd\":\"status\"}");
    shutdown(a.get(), SHUT_WR);
    int big = 0;
    for (int i = 0; i < n; i++) {
        std::string line = read_line(a);
        if (line.empty()) break;
        big += json::parse(line).contains("pad");
    }
    EXPECT_EQ(big, n);
    EXPECT_EQ(json::parse(read_line(a))["state"], "running");
    Fd q = connect_to(p);
    send_all(q, "{\"cmd\":\"quit\"}\n");
    EXPECT_EQ(json::parse(read_line(q))["state"], "stopping");
    EXPECT_EQ(wait_child(pid), 0);
}

TEST(ApiSocket, ClientsBeyondTheLimitAreToldAndClosed) {
    TempDir d;
    std::string p = d.path + "/api.sock";
    pid_t pid = serve_in_child(p);
    std::vector<Fd> held;
    held.push_back(wait_connect(p));
    for (unsigned i = 1; i < ApiSocket::kMaxClients; i++) held.push_back(connect_to(p));
    // Each held slot answers, so all are in the server's table.
    for (auto& h : held) {
        send_all(h, "{\"cmd\":\"status\"}\n");
        EXPECT_EQ(json::parse(read_line(h))["ok"], true);
    }
    Fd extra = connect_to(p);
    json busy = json::parse(read_line(extra));
    EXPECT_EQ(busy["ok"], false);
    EXPECT_NE(busy["error"].get<std::string>().find("too many clients"), std::string::npos);
    held.pop_back();  // a slot freed: a new client is served once the server has seen it go
    json reply;
    for (int i = 0; i < 500; i++) {
        Fd next = connect_to(p);
        send_all(next, "{\"cmd\":\"quit\"}\n");
        reply = json::parse(read_line(next));
        if (reply["ok"] == true) break;
        usleep(10000);
    }
    EXPECT_EQ(reply["ok"], true) << reply.dump();
    if (reply["ok"] != true) kill(pid, SIGKILL);
    EXPECT_EQ(wait_child(pid), 0);
}

namespace {
void send_with_fds(const Fd& s, const std::string& line, const std::vector<int>& fds) {
    iovec io{const_cast<char*>(line.data()), line.size()};
    std::vector<char> control(CMSG_SPACE(fds.size() * sizeof(int)));
    msghdr m{};
    m.msg_iov = &io;
    m.msg_iovlen = 1;
    m.msg_control = control.data();
    m.msg_controllen = control.size();
    cmsghdr* h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
    std::memcpy(CMSG_DATA(h), fds.data(), fds.size() * sizeof(int));
    ASSERT_EQ(sendmsg(s.get(), &m, MSG_NOSIGNAL), ssize_t(line.size()));
}

// What the pipe's read end gets within 5 s: its text, or "EOF" once every
// copy of the write end (the server's too) is closed.
std::string pipe_text(const Fd& r) {
    std::string got;
    char buf[64];
    for (;;) {
        pollfd p{r.get(), POLLIN, 0};
        if (poll(&p, 1, 5000) != 1) return got + "(still open)";
        ssize_t n = read(r.get(), buf, sizeof buf);
        if (n <= 0) return got + "EOF";
        got.append(buf, size_t(n));
    }
}
}  // namespace

// A file passed with a request belongs to that request: one a request does
// not take is closed with its reply, never handed to a later request; a
// request whose files were cut off is refused and every file closed.
TEST(ApiSocket, PassedFilesBelongToTheirLine) {
    TempDir d;
    std::string p = d.path + "/api.sock";
    pid_t pid = serve_in_child(p);
    Fd a = wait_connect(p);
    ASSERT_TRUE(a);
    int pf[2];
    ASSERT_EQ(pipe(pf), 0);
    Fd r1(pf[0]), w1(pf[1]);
    send_with_fds(a, "{\"cmd\":\"status\"}\n", {w1.get()});
    w1 = Fd();
    EXPECT_EQ(json::parse(read_line(a))["ok"], true);
    EXPECT_EQ(pipe_text(r1), "EOF") << "the server kept a file its request did not take";
    send_all(a, "{\"cmd\":\"snapshot\",\"file\":\"x\"}\n");
    EXPECT_NE(json::parse(read_line(a))["error"].get<std::string>().find("needs a file passed"), std::string::npos);

    // Two requests back to back, the file with the second: it goes to the second.
    ASSERT_EQ(pipe(pf), 0);
    Fd r2(pf[0]), w2(pf[1]);
    send_all(a, "{\"cmd\":\"status\"}\n");
    send_with_fds(a, "{\"cmd\":\"snapshot\",\"file\":\"two\"}\n", {w2.get()});
    w2 = Fd();
    EXPECT_EQ(json::parse(read_line(a))["state"], "running");
    EXPECT_EQ(json::parse(read_line(a))["written"], 8);
    EXPECT_EQ(pipe_text(r2), "snap:twoEOF");

    // More files than fit (the kernel cuts the message: MSG_CTRUNC).
    ASSERT_EQ(pipe(pf), 0);
    Fd r3(pf[0]), w3(pf[1]);
    std::vector<int> five(kMaxPassedFds + 1, w3.get());
    send_with_fds(a, "{\"cmd\":\"snapshot\",\"file\":\"cut\"}\n", five);
    w3 = Fd();
    json cut = json::parse(read_line(a));
    EXPECT_EQ(cut["ok"], false);
    EXPECT_NE(cut["error"].get<std::string>().find("more files were passed"), std::string::npos) << cut.dump();
    EXPECT_EQ(pipe_text(r3), "EOF") << "a file of the refused request was written or kept";

    send_all(a, "{\"cmd\":\"quit\"}\n");
    EXPECT_EQ(json::parse(read_line(a))["state"], "stopping");
    EXPECT_EQ(wait_child(pid), 0);
}
