#include "vmm/api_socket.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <vector>

#include "vmm/api_protocol.hpp"
#include "vmm/error.hpp"

namespace minivmm {

namespace {

sockaddr_un address(const std::string& path) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (path.empty()) throw UserError("--api-sock: empty path");
    if (path.size() >= sizeof a.sun_path)
        throw UserError("--api-sock " + path + ": longer than the " + std::to_string(sizeof a.sun_path - 1) +
                        " bytes a unix socket path may have");
    std::memcpy(a.sun_path, path.data(), path.size());
    return a;
}

// True if a process accepts connections on the socket at path.
bool someone_listens(const sockaddr_un& a, const std::string& path) {
    // Non-blocking: a server whose backlog is full would hold a blocking
    // connect until it accepts, and it is listening all the same (EAGAIN).
    Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!s) throw internal_error("socket");
    if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0 || errno == EAGAIN) return true;
    if (errno == ECONNREFUSED) return false;
    throw sys_error("--api-sock " + path + ": cannot check the socket there");
}

// Files that came with a client's bytes (SCM_RIGHTS), with where in its
// byte stream: the last byte the recvmsg that brought them returned. The
// kernel ends a read at the bytes a file was sent with, so that byte is one
// of them, and the files belong to the request line it is part of.
struct Passed {
    uint64_t at;
    Fd fd;
    bool cut = false;  // a mark, no file: some sent here were cut off (MSG_CTRUNC, or over the bound)
};

struct Client {
    Fd fd;
    std::string in, out;
    uint64_t received = 0;    // bytes read from it so far; in holds the last of them
    bool discarding = false;  // the rest of an over-long line
    bool closing = false;     // the client is done sending: close once out is written
    std::deque<Passed> fds;   // files passed with its requests, in stream order
    size_t held = 0;          // of those, real files
    std::chrono::steady_clock::time_point last;
};

// Writes what it can without blocking; false if the client is gone.
bool flush(Client& c) {
    while (!c.out.empty()) {
        ssize_t n = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) return errno == EAGAIN || errno == EINTR;
        c.out.erase(0, static_cast<size_t>(n));
    }
    return true;
}

// The files passed with the line whose bytes run from stream offset begin
// to end (inclusive) go to line; those that came with bytes before it (an
// over-long line's) are closed. True if some sent with it were cut off.
bool line_fds(Client& c, uint64_t begin, uint64_t end, PassedFds& line) {
    bool cut = false;
    while (!c.fds.empty() && c.fds.front().at <= end) {
        Passed p = std::move(c.fds.front());
        c.fds.pop_front();
        if (p.fd) c.held--;
        if (p.at < begin) continue;
        if (p.cut) cut = true;
        if (p.fd) line.push_back(std::move(p.fd));
    }
    return cut;
}

// One request line and the files passed with it; those it does not take
// are closed with the reply. A request whose files were cut off is refused:
// it could otherwise act on the wrong one.
std::string handle(Client& c, std::string_view line, uint64_t begin, ApiTarget& target) {
    PassedFds fds;
    // To its newline (or, unterminated, past its last byte).
    if (line_fds(c, begin, begin + line.size(), fds))
        return api_error_reply("more files were passed with the request than the " + std::to_string(kMaxPassedFds) +
                               " a client may pass at once: refused, every file closed");
    return api_handle_line(line, target, &fds);
}

// Handles the complete lines in c.in until the replies reach their bound;
// bounds what is left.
void take_lines(Client& c, ApiTarget& target) {
    const uint64_t base = c.received - c.in.size();  // c.in[0]'s offset in the stream
    size_t start = 0;
    for (size_t nl; c.out.size() < ApiSocket::kMaxPendingReplies &&
                    (nl = c.in.find('\n', start)) != std::string::npos;
         start = nl + 1) {
        if (c.discarding) {
            c.discarding = false;  // the over-long line ends here; it was answered
            PassedFds dropped;
            line_fds(c, 0, base + nl, dropped);
            continue;
        }
        c.out += handle(c, std::string_view(c.in).substr(start, nl - start), base + start, target);
    }
    c.in.erase(0, start);
    if (c.in.find('\n') != std::string::npos) return;  // lines held back for their replies
    // The last line of a client that closed its side unterminated.
    if (c.closing && !c.in.empty() && !c.discarding && c.in.size() <= kMaxRequestLine) {
        c.out += handle(c, c.in, base + start, target);
        c.in.clear();
    }
    if (c.in.size() > kMaxRequestLine) {
        if (!c.discarding) c.out += api_overlong_reply();
        c.discarding = true;
        c.in.clear();
    } else if (c.discarding) {
        c.in.clear();
    }
}

// Takes the files that came with the bytes ending at stream offset at
// (SCM_RIGHTS), up to kMaxPassedFds held per client. Files the kernel could
// not deliver (MSG_CTRUNC: it closed them) or over the bound (closed here)
// leave a mark that fails their request.
void take_fds(Client& c, msghdr& m, uint64_t at) {
    bool cut = m.msg_flags & MSG_CTRUNC;
    for (cmsghdr* h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
        size_t n = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof fd);
            Fd owned(fd);
            if (c.held >= kMaxPassedFds) {
                cut = true;
                continue;
            }
            c.fds.push_back({at, std::move(owned)});
            c.held++;
        }
    }
    if (cut) c.fds.push_back({at, Fd(), true});
}

// Reads what is there; false once the client has closed its side (or failed).
bool read_some(Client& c) {
    char buf[16384];
    alignas(cmsghdr) char control[CMSG_SPACE(kMaxPassedFds * sizeof(int))];
    for (;;) {
        iovec io{buf, sizeof buf};
        msghdr m{};
        m.msg_iov = &io;
        m.msg_iovlen = 1;
        m.msg_control = control;
        m.msg_controllen = sizeof control;
        ssize_t n = ::recvmsg(c.fd.get(), &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if (n > 0) {
            c.received += static_cast<uint64_t>(n);
            take_fds(c, m, c.received - 1);
            c.in.append(buf, static_cast<size_t>(n));
            if (c.in.size() > kMaxRequestLine) return true;  // handled before reading on
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
        return false;
    }
}

}  // namespace

ApiSocket::ApiSocket(const std::string& path) : path_(path) {
    sockaddr_un a = address(path);
    size_t slash = path.rfind('/');
    std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    base_ = slash == std::string::npos ? path : path.substr(slash + 1);
    if (base_.empty()) throw UserError("--api-sock " + path + ": names a directory, not a socket");
    dir_ = Fd(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!dir_) throw sys_error("--api-sock " + path + ": its directory " + dir);
    struct stat st;
    if (::fstatat(dir_.get(), base_.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (!S_ISSOCK(st.st_mode)) throw UserError("--api-sock " + path + ": exists and is not a socket");
        if (someone_listens(a, path))
            throw UserError("--api-sock " + path + ": a running process serves that socket");
        // Left by a process that did not end cleanly: ours to replace.
        if (::unlinkat(dir_.get(), base_.c_str(), 0) < 0 && errno != ENOENT)
            throw sys_error("--api-sock " + path + ": cannot remove the stale socket");
    } else if (errno != ENOENT) {
        throw sys_error("--api-sock " + path);
    }
    listen_ = Fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!listen_) throw internal_error("socket");
    // Owner-only from the moment it exists: bind creates the file with the
    // umask applied. No other thread runs yet to be affected by the umask.
    mode_t old = ::umask(0177);
    int rc = ::bind(listen_.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a);
    int err = errno;
    ::umask(old);
    if (rc < 0) throw sys_error("--api-sock " + path + ": cannot create the socket", err);
    removed_ = false;
    if (::fstatat(dir_.get(), base_.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
        err = errno;
        remove();
        throw sys_error("--api-sock " + path, err);
    }
    dev_ = st.st_dev, ino_ = st.st_ino;
    if (::listen(listen_.get(), static_cast<int>(kMaxClients)) < 0) {
        err = errno;
        remove();
        throw internal_error("listen on " + path, err);
    }
}

ApiSocket::~ApiSocket() { remove(); }

void ApiSocket::remove() {
    if (removed_ || !dir_) return;
    removed_ = true;
    // Not a file someone put in its place since.
    struct stat st;
    if (::fstatat(dir_.get(), base_.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_dev != dev_ ||
        st.st_ino != ino_)
        return;
    if (::unlinkat(dir_.get(), base_.c_str(), 0) < 0)
        std::fprintf(stderr, "\r\nminivmm: --api-sock %s: cannot remove it: %s\n", path_.c_str(), std::strerror(errno));
}

void ApiSocket::serve(int stop_fd, ApiTarget& target) {
    using Clock = std::chrono::steady_clock;
    std::vector<std::unique_ptr<Client>> clients;
    std::vector<pollfd> fds;
    for (;;) {
        fds.clear();
        fds.push_back({stop_fd, POLLIN, 0});
        fds.push_back({listen_.get(), POLLIN, 0});
        for (auto& c : clients)
            // A client with a reply still to take is not read from: its
            // requests wait in the socket, not in our memory.
            fds.push_back({c->fd.get(), static_cast<short>(c->out.empty() ? POLLIN : POLLOUT), 0});
        if (::poll(fds.data(), fds.size(), 1000) < 0 && errno != EINTR) throw internal_error("poll (API)");
        if (fds[0].revents) break;
        auto now = Clock::now();
        for (size_t i = 0; i < clients.size(); i++) {
            Client& c = *clients[i];
            short ev = fds[i + 2].revents;
            bool alive = true;
            if (ev & (POLLIN | POLLHUP | POLLERR)) {
                c.last = now;
                if (!read_some(c)) c.closing = true;
                take_lines(c, target);
            }
            if (!c.out.empty()) {
                size_t before = c.out.size();
                alive = flush(c);
                // Only a client that takes its replies is active: one that
                // sends and never reads is idle, and loses its slot.
                if (c.out.size() < before) c.last = now;
                // Replies taken: the lines held back for them go on.
                if (c.out.empty() && !c.in.empty()) take_lines(c, target);
            }
            bool idle = now - c.last > std::chrono::milliseconds(kIdleLimitMs);
            if (!alive || (c.closing && c.out.empty()) || idle) clients[i].reset();
        }
        std::erase(clients, nullptr);
        if (fds[1].revents & POLLIN) {
            for (;;) {
                Fd s(::accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
                if (!s) break;
                if (clients.size() >= kMaxClients) {
                    std::string busy = api_error_reply("too many clients (" + std::to_string(kMaxClients) + ")");
                    [[maybe_unused]] ssize_t n = ::send(s.get(), busy.data(), busy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
                    continue;
                }
                auto c = std::make_unique<Client>();
                c->fd = std::move(s);
                c->last = now;
                clients.push_back(std::move(c));
            }
        }
    }
    // Stopping: the replies that are ready (quit's own) go out if they can.
    for (auto& c : clients) flush(*c);
    clients.clear();
    remove();
}

}  // namespace minivmm
