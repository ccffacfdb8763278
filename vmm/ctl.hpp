// minivmm ctl PATH COMMAND [KEY=VALUE...]: the control socket's client, in
// the same binary. It sends {"cmd":COMMAND, KEY:VALUE...} as one line (for
// `snapshot FILE`, with FILE opened here and passed along; for `migrate
// URI`, with the connection to URI made here and passed along), prints
// the reply (indented), and exits 0 if the reply says ok, 1 if it does not,
// or with one line on stderr and status 1 when nothing serves PATH.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace minivmm {

// The request a command line makes (args: COMMAND [KEY=VALUE...]); throws
// UserError for a malformed argument.
nlohmann::ordered_json ctl_request(const std::vector<std::string>& args);

// argv after "ctl": PATH COMMAND [KEY=VALUE...]. Returns the exit status.
int run_ctl(int argc, char** argv);

}  // namespace minivmm
