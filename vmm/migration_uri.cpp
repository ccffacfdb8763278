#include "vmm/migration_uri.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <regex>

#include "vmm/error.hpp"

namespace minivmm {

namespace {

sockaddr_un unix_address(const MigrationUri& u) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, u.path.data(), u.path.size());
    return a;
}

struct AddrInfo {
    addrinfo* list = nullptr;
    ~AddrInfo() {
        if (list) freeaddrinfo(list);
    }
};

void resolve(const MigrationUri& u, bool passive, AddrInfo& out) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    std::string port = std::to_string(u.port);
    int rc = getaddrinfo(u.host.empty() ? nullptr : u.host.c_str(), port.c_str(), &hints, &out.list);
    if (rc != 0) throw UserError(u.text + ": " + gai_strerror(rc));
}

// Latency matters more than packet count at the switch-over: the last
// pages and the device state are small writes the guest waits for.
void no_delay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace

MigrationUri parse_migration_uri(const std::string& s) {
    MigrationUri u;
    u.text = s;
    if (s.starts_with("unix:")) {
        u.kind = MigrationUri::Kind::Unix;
        u.path = s.substr(5);
        if (u.path.empty()) throw UserError(s + ": no path after unix:");
        if (u.path.size() >= sizeof(sockaddr_un{}.sun_path))
            throw UserError(s + ": the path is longer than a unix socket's " +
                            std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " bytes");
        return u;
    }
    static const std::regex tcp(R"(tcp:(\[([0-9A-Fa-f:.]+)\]|([^:\[\]]*)):([0-9]{1,5}))");
    std::smatch m;
    if (std::regex_match(s, m, tcp)) {
        u.kind = MigrationUri::Kind::Tcp;
        u.host = m[2].matched ? m[2].str() : m[3].str();
        unsigned long port = std::stoul(m[4].str());
        if (port == 0 || port > 65535) throw UserError(s + ": port must be 1 to 65535");
        u.port = static_cast<uint16_t>(port);
        return u;
    }
    throw UserError("'" + s + "': a migration address is unix:PATH or tcp:HOST:PORT");
}

Fd connect_migration(const MigrationUri& u) {
    if (u.kind == MigrationUri::Kind::Unix) {
        Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (!s) throw sys_error("socket");
        sockaddr_un a = unix_address(u);
        if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) < 0)
            throw sys_error(u.text + ": cannot connect (is the destination waiting with --incoming?)");
        return s;
    }
    if (u.host.empty()) throw UserError(u.text + ": no host to connect to");
    AddrInfo ai;
    resolve(u, false, ai);
    int err = ECONNREFUSED;
    for (addrinfo* p = ai.list; p; p = p->ai_next) {
        Fd s(::socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC, p->ai_protocol));
        if (!s) continue;
        if (::connect(s.get(), p->ai_addr, p->ai_addrlen) == 0) {
            no_delay(s.get());
            return s;
        }
        err = errno;
    }
    throw sys_error(u.text + ": cannot connect (is the destination waiting with --incoming?)", err);
}

Fd listen_migration(const MigrationUri& u) {
    if (u.kind == MigrationUri::Kind::Unix) {
        Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (!s) throw sys_error("socket");
        sockaddr_un a = unix_address(u);
        // Owner-only: whoever connects first feeds this process a machine.
        mode_t old = ::umask(0177);
        int rc = ::bind(s.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a);
        int err = errno;
        ::umask(old);
        if (rc < 0) throw sys_error("--incoming " + u.text, err);
        if (::listen(s.get(), 1) < 0) throw sys_error("--incoming " + u.text + ": listen");
        return s;
    }
    AddrInfo ai;
    resolve(u, true, ai);
    int err = EADDRNOTAVAIL;
    for (addrinfo* p = ai.list; p; p = p->ai_next) {
        Fd s(::socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC, p->ai_protocol));
        if (!s) continue;
        int one = 1;
        setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (::bind(s.get(), p->ai_addr, p->ai_addrlen) == 0 && ::listen(s.get(), 1) == 0) return s;
        err = errno;
    }
    throw sys_error("--incoming " + u.text, err);
}

Fd accept_migration(Fd listener, const MigrationUri& u) {
    Fd c;
    do c = Fd(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    while (!c && errno == EINTR);
    int err = errno;
    if (u.kind == MigrationUri::Kind::Unix) ::unlink(u.path.c_str());
    if (!c) throw sys_error("--incoming " + u.text + ": accept", err);
    if (u.kind == MigrationUri::Kind::Tcp) no_delay(c.get());
    return c;
}

}  // namespace minivmm
