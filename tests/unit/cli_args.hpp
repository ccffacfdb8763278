// Command lines for the tests of minivmm's own: parse_cli and run_ctl take
// argc/argv as main gets them.
#pragma once
#include <string>
#include <vector>

#include "vmm/cli.hpp"

namespace minivmm::testing {

// Calls main-like f(argc, argv) with args as the words after the program's name.
template <typename F>
auto with_argv(std::vector<std::string> args, F f) {
    args.insert(args.begin(), "minivmm");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    return f(static_cast<int>(args.size()), argv.data());
}

inline Options parse(std::vector<std::string> args) { return with_argv(std::move(args), parse_cli); }

}  // namespace minivmm::testing
