// The control socket's protocol: one JSON object per line in, one per line
// out. A request names its command in "cmd"; a reply is {"ok":true, ...} or
// {"ok":false,"error":"..."}. Everything a client may get wrong (not JSON,
// not an object, an unknown command or argument, a wrong type, a line over
// kMaxRequestLine) is answered with an error reply: the VM runs on.
#pragma once
#include <nlohmann/json.hpp>

#include <cstddef>
#include <deque>
#include <string>
#include <stdexcept>
#include <string_view>

#include "vmm/fd.hpp"

namespace minivmm {

// A request line's bound, newline excluded: every request is a few bytes.
constexpr size_t kMaxRequestLine = 64 * 1024;

// What the commands act on (the Machine; a fake in the unit tests). Each
// returns the reply's fields besides "ok", or throws ApiError for an error
// reply.
class ApiTarget {
public:
    virtual ~ApiTarget() = default;
    virtual nlohmann::ordered_json status() = 0;
    // nic: only that NIC's counters ("net0"); empty: every device's.
    virtual nlohmann::ordered_json stats(const std::string& nic) = 0;
    virtual nlohmann::ordered_json pause() = 0;
    virtual nlohmann::ordered_json resume() = 0;
    // Asks the VM to stop (exit status 0); the reply still goes out.
    virtual nlohmann::ordered_json quit() = 0;
    // Writes the whole machine to file (a file the client opened and passed
    // with the request); name is what the client called it, for messages.
    // The guest is paused meanwhile, then resumed, or with stop the VM ends
    // once the snapshot is complete.
    virtual nlohmann::ordered_json snapshot(Fd file, const std::string& name, bool stop) = 0;
    // Moves the guest live to the minivmm at the other end of conn (a
    // connection the client made to uri and passed with the request); on
    // success the VM stops here once the reply is out.
    virtual nlohmann::ordered_json migrate(Fd conn, const std::string& uri) = 0;
};

// Files a client passed with one request line (SCM_RIGHTS, sent with that
// line's bytes). A command that writes somewhere (snapshot, migrate) takes
// the first: minivmm opens no path and connects nowhere itself once the
// guest runs, so its filters need no open() or connect(), and the client's
// own permissions decide where state may go. Files a request does not take
// are closed with its reply; a request whose files were cut off (more than
// kMaxPassedFds held at once) is refused.
using PassedFds = std::deque<Fd>;
constexpr size_t kMaxPassedFds = 4;

struct ApiError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// One request line (without its newline) to one reply line (with it).
// Whatever a command throws becomes an error reply: the VM runs on.
std::string api_handle_line(std::string_view line, ApiTarget& target, PassedFds* fds = nullptr);
// The reply to a line that was longer than kMaxRequestLine.
std::string api_overlong_reply();
// {"ok":false,"error":why} and its newline.
std::string api_error_reply(const std::string& why);

}  // namespace minivmm
