// Command-line options.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "vmm/seccomp.hpp"

namespace minivmm {

// One --net argument: NAME[,opt=val...] (a tap), or raw=IFNAME / macvtap=IFNAME.
struct NetSpec {
    enum class Kind { Tap, Raw, Macvtap } kind = Kind::Tap;
    std::string ifname;
    std::map<std::string, std::string> opts;  // validated: mac, vhost, queues
};

struct Options {
    std::string kernel;
    std::string initrd;
    std::optional<std::string> cmdline;
    uint64_t mem = 512ull << 20;
    unsigned cpus = 1;
    std::vector<NetSpec> nets;
    bool verbose = false;
    bool stats = false;
    SeccompMode seccomp = SeccompMode::On;
    bool help = false;
    bool version = false;
};

constexpr uint64_t kMinMem = 64ull << 20;
constexpr unsigned kMaxCpus = 255;
// A PCI bus has 32 slots; the host bridge takes slot 0.
constexpr unsigned kMaxNics = 31;

// Throws UserError with one line naming the bad option and why.
Options parse_cli(int argc, char** argv);
// "512M", "2G", "1048576K"; a bare number means MiB, as in QEMU's -m.
uint64_t parse_size(const std::string& s);
NetSpec parse_net(const std::string& s);
SeccompMode parse_seccomp(const std::string& s);
// The guest command line: the user's, plus what the machine model needs.
std::string guest_cmdline(const Options& o);
const char* usage();

}  // namespace minivmm
