// What minivmm gives up once everything it needs from the host is open:
// every capability (in every thread: they all start after this), set-uid
// gains (no_new_privs), optionally root itself (--user) and the host's
// file system (--jail). From then on a thread a guest took over holds only
// the fds minivmm opened and its seccomp list allows it to use.
#pragma once
#include <sys/types.h>

#include "vmm/fd.hpp"

#include <optional>
#include <string>

namespace minivmm {

struct Identity {
    uid_t uid;
    gid_t gid;
    std::string name;  // as given, for messages
};

class Confinement {
public:
    // Checks the user's --user and --jail (UserError: unknown user, jail not
    // a directory), before /dev/kvm is opened.
    Confinement(const std::optional<std::string>& user, const std::optional<std::string>& jail);
    // Enters it. Must run before the first thread starts (chroot, uids and
    // capabilities are per thread or per fs, and threads inherit them).
    // UserError: the jail or the user switch cannot be set up (not root).
    void enter();
    // One line for --verbose.
    std::string describe() const;

private:
    std::optional<Identity> user_;
    std::optional<std::string> jail_;  // absolute, resolved
    // The jail as checked, held open so its inode stays the one checked: a
    // path swapped for a symlink meanwhile is caught by comparing them.
    Fd jail_fd_;
    dev_t jail_dev_ = 0;
    ino_t jail_ino_ = 0;
};

// USER (a name in the password database, with its primary group) or UID:GID.
Identity parse_identity(const std::string& s);

}  // namespace minivmm
