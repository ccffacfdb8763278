// Errors that reach the user as one line on stderr.
#pragma once
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace minivmm {

// Thrown for anything the user can fix (bad option, missing file, no permission).
// main() prints "minivmm: <what>" and exits non-zero; no stack trace, no abort.
struct UserError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A failed system call, with errno's text appended so the line says why.
inline UserError sys_error(const std::string& what, int err = errno) {
    return UserError(what + ": " + std::strerror(err));
}

}  // namespace minivmm
