// Where a migration goes: unix:PATH or tcp:HOST:PORT (HOST a name, an IPv4
// address or a bracketed IPv6 one). The client (minivmm ctl) connects and
// hands the connection to the source minivmm, so a running minivmm never
// connects anywhere itself; the destination listens (--incoming), set up
// before any jail.
#pragma once
#include <cstdint>
#include <string>

#include "vmm/fd.hpp"

namespace minivmm {

struct MigrationUri {
    enum class Kind { Unix, Tcp } kind = Kind::Unix;
    std::string path;  // unix
    std::string host;  // tcp
    uint16_t port = 0;
    std::string text;  // as the user wrote it
};

// Throws UserError naming what is wrong.
MigrationUri parse_migration_uri(const std::string& s);
// Connected stream socket; throws UserError (nothing listens, no such host...).
Fd connect_migration(const MigrationUri& uri);
// Listening socket for one connection; a unix path is created owner-only and
// must not exist. Throws UserError.
Fd listen_migration(const MigrationUri& uri);
// Accepts the one connection (blocking) and closes the listener; for a unix
// URI the path is removed once taken.
Fd accept_migration(Fd listener, const MigrationUri& uri);

}  // namespace minivmm
