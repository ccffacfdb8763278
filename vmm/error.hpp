// Errors, and what each kind costs the user.
#pragma once
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace minivmm {

// Anything the user can fix (bad option, missing file, no permission, a host
// without KVM): main() prints "minivmm: <what>" and exits 1.
struct UserError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A call that should not fail on a working host (a KVM or vhost ioctl, an
// eventfd): main() prints "minivmm: internal error: <what>" and exits 2, so
// scripts can tell our failures from their users' mistakes.
struct InternalError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A failed system call the user can do something about (open a file, a tap),
// with errno's text appended so the line says why.
inline UserError sys_error(const std::string& what, int err = errno) {
    return UserError(what + ": " + std::strerror(err));
}

// A failed call that is minivmm's or the host's fault, named with its errno.
inline InternalError internal_error(const std::string& what, int err = errno) {
    return InternalError(what + ": " + std::strerror(err));
}

}  // namespace minivmm
