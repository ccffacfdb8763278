// Command-line options.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vmm/kernel_image.hpp"
#include "vmm/seccomp.hpp"

namespace minivmm {

// One --net argument: NAME[,opt=val...] (a tap), or raw=IFNAME / macvtap=IFNAME,
// checked once by parse_net against the limits below.
struct NetSpec {
    enum class Kind { Tap, Raw, Macvtap } kind = Kind::Tap;
    // Auto: the kernel's vhost-net where this host has it, else the worker.
    enum class Datapath { Auto, Off, Worker, Kernel } vhost = Datapath::Auto;
    std::string ifname;
    std::optional<std::array<uint8_t, 6>> mac;  // none: a default (or a macvtap's own)
    unsigned queues = 1;                        // queue pairs
    std::optional<unsigned> mtu;                // none: the link's own
};

struct Options {
    std::string kernel;
    std::string initrd;
    std::optional<BootMode> boot;  // none: direct (the only way for a vmlinux)
    std::optional<std::string> cmdline;
    uint64_t mem = 512ull << 20;
    unsigned cpus = 1;
    std::vector<NetSpec> nets;
    bool verbose = false;
    bool stats = false;
    SeccompMode seccomp = SeccompMode::On;
    std::optional<std::string> user;  // --user USER or UID:GID
    std::optional<std::string> jail;  // --jail DIR
    std::optional<std::string> api_sock;  // --api-sock PATH: the control socket
    std::optional<std::string> restore;   // --restore FILE: a snapshot to continue, instead of a kernel
    std::optional<std::string> incoming;  // --incoming URI: a migrating guest to take, instead of a kernel
    bool help = false;
    bool version = false;
};

constexpr uint64_t kMinMem = 64ull << 20;
constexpr unsigned kMaxCpus = 255;
// A PCI bus has 32 slots; the host bridge takes slot 0.
constexpr unsigned kMaxNics = 31;
// The device's limit (virtio-net), and so the user's.
extern const unsigned kMaxQueuePairs;

// Throws UserError with one line naming the bad option and why.
Options parse_cli(int argc, char** argv);
// "512M", "2G", "1048576K"; a bare number means MiB, as in QEMU's -m.
uint64_t parse_size(const std::string& s);
NetSpec parse_net(const std::string& s);
SeccompMode parse_seccomp(const std::string& s);
BootMode parse_boot(const std::string& s);
// The guest command line: the user's, plus what the machine model needs.
std::string guest_cmdline(const Options& o);
const char* usage();

}  // namespace minivmm
