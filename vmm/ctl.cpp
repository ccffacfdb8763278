#include "vmm/ctl.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "vmm/api_protocol.hpp"
#include "vmm/error.hpp"
#include "vmm/fd.hpp"
#include "vmm/migration_uri.hpp"

namespace minivmm {

using json = nlohmann::ordered_json;

namespace {
// Longer than the server's own limit on pause (10 s) with room to spare;
// a snapshot or a migration sends all of RAM first.
constexpr int kReplyTimeoutMs = 30'000, kSnapshotTimeoutMs = 600'000;
constexpr size_t kMaxReply = 16u << 20;

Fd connect_to(const std::string& path) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof a.sun_path) throw UserError("ctl: bad socket path '" + path + "'");
    std::memcpy(a.sun_path, path.data(), path.size());
    Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s) throw sys_error("ctl: socket");
    if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) < 0) {
        int err = errno;
        if (err == ENOENT) throw UserError("ctl: " + path + ": no such socket (is minivmm running with --api-sock?)");
        if (err == ECONNREFUSED) throw UserError("ctl: " + path + ": connection refused (nothing serves it)");
        throw sys_error("ctl: " + path, err);
    }
    return s;
}

// Commands whose first argument needs no KEY=: what it names.
const char* positional_key(const std::string& cmd) {
    if (cmd == "snapshot") return "file";
    if (cmd == "migrate") return "uri";
    return nullptr;
}

// A snapshot goes to a new file beside FILE (same directory, so the same
// file system) that replaces FILE only once minivmm says the snapshot is
// complete: one that fails leaves what was at FILE as it was.
struct SnapshotFile {
    std::string temp, file;
    SnapshotFile() = default;
    SnapshotFile(const SnapshotFile&) = delete;
    SnapshotFile& operator=(const SnapshotFile&) = delete;
    ~SnapshotFile() {
        if (!temp.empty()) ::unlink(temp.c_str());
    }
    Fd create(const std::string& name) {
        // A FIFO, a device, a terminal: written in place (truncating means
        // nothing there, and a file renamed over /dev/null would be a disaster).
        struct stat st;
        if (::stat(name.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
            Fd f(::open(name.c_str(), O_WRONLY | O_CLOEXEC));
            if (!f) throw sys_error("ctl: snapshot " + name);
            return f;
        }
        file = name;
        std::string t = name + ".partial-XXXXXX";
        int fd = ::mkostemp(t.data(), O_CLOEXEC);  // mode 0600
        if (fd < 0) throw sys_error("ctl: snapshot " + name + ": creating a file beside it");
        temp = t;
        return Fd(fd);
    }
    std::string keep() {
        std::string kept = temp;
        temp.clear();
        return kept;
    }
    void commit() {
        if (::rename(temp.c_str(), file.c_str()) < 0) {
            int err = errno;
            std::string kept = temp;
            temp.clear();  // the only copy of a guest that may have stopped: kept
            throw sys_error("ctl: snapshot saved as " + kept + ", but it cannot replace " + file, err);
        }
        temp.clear();
    }
};

// The snapshot's file is created here, and the migration's connection made
// here, with the client's permissions, and passed to minivmm with the
// request: a running minivmm opens no path and connects nowhere.
Fd passed_fd(const json& req, SnapshotFile& snap) {
    if (req["cmd"] == "snapshot" && req.contains("file")) return snap.create(req["file"].get<std::string>());
    if (req["cmd"] == "migrate" && req.contains("uri")) {
        try {
            return connect_migration(parse_migration_uri(req["uri"].get<std::string>()));
        } catch (const UserError& e) {
            throw UserError(std::string("ctl: migrate ") + e.what());
        }
    }
    return {};
}

// Sends the line, with passed (if any) attached to its first bytes.
void send_request(const Fd& s, const std::string& path, const std::string& line, const Fd& passed) {
    for (size_t off = 0; off < line.size();) {
        iovec io{const_cast<char*>(line.data() + off), line.size() - off};
        msghdr m{};
        m.msg_iov = &io;
        m.msg_iovlen = 1;
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
        if (off == 0 && passed) {
            m.msg_control = control;
            m.msg_controllen = sizeof control;
            cmsghdr* h = CMSG_FIRSTHDR(&m);
            h->cmsg_level = SOL_SOCKET;
            h->cmsg_type = SCM_RIGHTS;
            h->cmsg_len = CMSG_LEN(sizeof(int));
            int fd = passed.get();
            std::memcpy(CMSG_DATA(h), &fd, sizeof fd);
        }
        ssize_t n = ::sendmsg(s.get(), &m, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw sys_error("ctl: " + path + ": sending the request");
        }
        off += static_cast<size_t>(n);
    }
}

std::string exchange(const Fd& s, const std::string& path, const std::string& line, const Fd& passed, int timeout_ms,
                     bool& sent) {
    send_request(s, path, line, passed);
    sent = true;
    std::string reply;
    char buf[4096];
    while (reply.find('\n') == std::string::npos) {
        pollfd p{s.get(), POLLIN, 0};
        int r = ::poll(&p, 1, timeout_ms);
        if (r == 0) throw UserError("ctl: " + path + ": no reply within " + std::to_string(timeout_ms / 1000) + " s");
        if (r < 0) {
            if (errno == EINTR) continue;
            throw sys_error("ctl: poll");
        }
        ssize_t n = ::read(s.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw sys_error("ctl: " + path + ": reading the reply");
        if (n == 0) throw UserError("ctl: " + path + ": the connection closed without a reply");
        reply.append(buf, static_cast<size_t>(n));
        // A control socket's reply is kilobytes; a peer streaming without
        // a newline is not one.
        if (reply.size() > kMaxReply && reply.find('\n') == std::string::npos)
            throw UserError("ctl: " + path + ": no end of line in the first " + std::to_string(kMaxReply >> 20) +
                            " MiB of the reply: not a control socket");
    }
    return reply.substr(0, reply.find('\n'));
}
}  // namespace

json ctl_request(const std::vector<std::string>& args) {
    if (args.empty() || args[0].empty()) throw UserError("ctl: no command (usage: minivmm ctl PATH COMMAND [KEY=VALUE...])");
    json req = {{"cmd", args[0]}};
    size_t first = 1;
    if (const char* key = positional_key(args[0]); key && args.size() > 1 && args[1].find('=') == std::string::npos) {
        req[key] = args[1];
        first = 2;
    }
    for (size_t i = first; i < args.size(); i++) {
        size_t eq = args[i].find('=');
        if (eq == std::string::npos || eq == 0)
            throw UserError("ctl: expected KEY=VALUE, got '" + args[i] + "'");
        std::string key = args[i].substr(0, eq);
        if (key == "cmd" || req.contains(key)) throw UserError("ctl: argument '" + key + "' given twice");
        req[key] = args[i].substr(eq + 1);
    }
    return req;
}

int run_ctl(int argc, char** argv) {
    try {
        if (argc < 2) throw UserError("ctl: expected a socket path and a command (usage: minivmm ctl PATH COMMAND [KEY=VALUE...])");
        std::string path = argv[0];
        json req = ctl_request(std::vector<std::string>(argv + 1, argv + argc));
        SnapshotFile snap;
        Fd passed = passed_fd(req, snap);
        Fd s = connect_to(path);
        int timeout = passed ? kSnapshotTimeoutMs : kReplyTimeoutMs;
        bool sent = false;
        json reply;
        try {
            std::string line = exchange(s, path, req.dump(-1, ' ', false, json::error_handler_t::replace) + "\n",
                                        passed, timeout, sent);
            reply = json::parse(line, nullptr, false);
            if (reply.is_discarded() || !reply.is_object() || !reply.contains("ok") || !reply["ok"].is_boolean())
                throw UserError("ctl: " + path + ": the reply is not a control socket's: " + line.substr(0, 200));
        } catch (const UserError& e) {
            // minivmm has the file and may still be writing it (a slow
            // disk, then=stop): without its answer, the file may be the
            // guest's only copy, so it stays, and the user hears where.
            if (!sent || snap.temp.empty()) throw;
            std::string kept = snap.keep();
            throw UserError(std::string(e.what()) + "; the snapshot, complete or not, is in " + kept);
        }
        bool ok = reply["ok"].get<bool>();
        if (ok && !snap.temp.empty()) snap.commit();
        std::printf("%s\n", reply.dump(2, ' ', false, json::error_handler_t::replace).c_str());
        return ok ? 0 : 1;
    } catch (const UserError& e) {
        std::fprintf(stderr, "minivmm: %s\n", e.what());
        return 1;
    }
}

}  // namespace minivmm
