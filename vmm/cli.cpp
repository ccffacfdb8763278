#include "vmm/cli.hpp"

#include <getopt.h>

#include <algorithm>
#include <cctype>
#include <regex>

#include "vmm/error.hpp"
#include "vmm/migration_uri.hpp"
#include "virtio/net_features.hpp"

namespace minivmm {

const unsigned kMaxQueuePairs = net::kMaxPairs;

const char* usage() {
    return "usage: minivmm --kernel BZIMAGE|VMLINUX [options]\n"
           "       minivmm --restore FILE | --incoming URI [options]\n"
           "Boots a Linux kernel under KVM with a serial console on stdin/stdout.\n"
           "\n"
           "  -k, --kernel PATH     Linux bzImage or vmlinux (ELF) to boot (required)\n"
           "      --boot direct|decompressor\n"
           "                        direct (default): minivmm decompresses a bzImage's kernel\n"
           "                        (gzip, xz, lzma, lz4, zstd) and enters it, no KASLR;\n"
           "                        decompressor: the bzImage's own code decompresses (and\n"
           "                        randomizes) it, slower. A vmlinux is always direct\n"
           "  -i, --initrd PATH     initial ramdisk\n"
           "  -c, --cmdline STR     kernel command line (console=ttyS0 is added when\n"
           "                        it names no console)\n"
           "  -m, --mem SIZE        guest memory, with K/M/G suffix; bare number = MiB\n"
           "                        (default 512M)\n"
           "  -p, --cpus N          number of vCPUs (default 1)\n"
           "  -n, --net SPEC        a NIC: TAP[,mac=52:54:00:xx:xx:xx][,vhost=off|worker|kernel]\n"
           "                        [,queues=N] (queue pairs, 1-16; default 1)[,mtu=N] (68-65535;\n"
           "                        default: the link's own; sets the link's); repeat for\n"
           "                        more NICs. Instead of TAP: raw=IFNAME (a packet socket\n"
           "                        on that interface; no offloads) or macvtap=IFNAME\n"
           "  -v, --verbose         show the memory layout, final command line and boot\n"
           "                        phase times (\"minivmm: boot: ...\" lines)\n"
           "      --stats           print device statistics at exit (and, with vCPU state, on SIGUSR1)\n"
           "      --seccomp on|log|off\n"
           "                        system call filters, one list per kind of thread (main,\n"
           "                        vCPU, vhost worker, I/O, console, ...). on (default): a\n"
           "                        call not on its thread's list ends minivmm with one line\n"
           "                        naming both, exit status 2; log: the kernel logs such\n"
           "                        calls (audit) and lets them through; off: no filters\n"
           "      --user USER|UID:GID\n"
           "                        run as this user (and its group, no others) once the\n"
           "                        devices are open (its threads then count against that\n"
           "                        user's process limit); minivmm keeps no capability either way\n"
           "      --jail DIR        run in a private mount namespace with DIR (bind-mounted\n"
           "                        read-only, nodev, nosuid, noexec) as its root; an empty\n"
           "                        directory will do: minivmm opens nothing after setup\n"
           "      --api-sock PATH   serve a control socket at PATH (mode 0600; made before\n"
           "                        --jail and --user take effect, so PATH is a host path;\n"
           "                        removed at exit): one JSON request per line, such as\n"
           "                        {\"cmd\":\"status\"}; commands status, stats, pause,\n"
           "                        resume, snapshot, migrate, quit (minivmm ctl PATH\n"
           "                        COMMAND)\n"
           "      --restore FILE    continue the guest a snapshot saved (minivmm ctl PATH\n"
           "                        snapshot FILE) instead of booting a kernel; --mem, --cpus\n"
           "                        and the NICs' queue pairs must match the snapshot's,\n"
           "                        the NICs' backends and ports may differ\n"
           "      --incoming URI    wait on URI (unix:PATH or tcp:HOST:PORT) for a guest\n"
           "                        migrating live from another minivmm (minivmm ctl PATH\n"
           "                        migrate URI there), then run it; the same rules as\n"
           "                        --restore\n"
           "  -h, --help            this text\n"
           "  -V, --version         version\n"
           "\n"
           "The guest ends minivmm with poweroff or reboot (exit 0); so does SIGTERM,\n"
           "Ctrl-C on the console, or the control socket's quit.\n"
           "\n"
           "usage: minivmm ctl PATH COMMAND [KEY=VALUE...]\n"
           "Sends one request to the control socket at PATH and prints the reply; exits\n"
           "0 if it says ok, 1 if not (or if nothing serves PATH).\n";
}

uint64_t parse_size(const std::string& s) {
    static const std::regex re(R"((\d+)([KkMmGgTt]?)(i?[Bb])?)");
    std::smatch m;
    if (!std::regex_match(s, m, re)) throw UserError("bad size '" + s + "' (expected e.g. 512M or 2G)");
    uint64_t n;
    try {
        n = std::stoull(m[1].str());
    } catch (...) {
        throw UserError("size '" + s + "' is out of range");
    }
    unsigned shift = 20;
    if (m[2].length()) shift = std::string("KMGT").find(static_cast<char>(std::toupper(m[2].str()[0]))) * 10 + 10;
    if (n > (UINT64_MAX >> shift)) throw UserError("size '" + s + "' is out of range");
    return n << shift;
}

NetSpec parse_net(const std::string& s) {
    NetSpec n;
    size_t comma = s.find(',');
    std::string head = s.substr(0, comma);
    if (head.rfind("raw=", 0) == 0) {
        n.kind = NetSpec::Kind::Raw;
        n.ifname = head.substr(4);
    } else if (head.rfind("macvtap=", 0) == 0) {
        n.kind = NetSpec::Kind::Macvtap;
        n.ifname = head.substr(8);
    } else {
        n.ifname = head;
    }
    // IFNAMSIZ is 16 with the terminator; '/' and blanks are never valid.
    static const std::regex ifname(R"([A-Za-z0-9_.:@-]{1,15})");
    if (!std::regex_match(n.ifname, ifname))
        throw UserError("--net '" + s + "': bad interface name '" + n.ifname + "'");
    static const std::regex mac(R"(([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2})");
    static const std::regex number(R"([1-9][0-9]{0,2})");
    std::vector<std::string> seen;
    while (comma != std::string::npos) {
        size_t next = s.find(',', comma + 1);
        std::string kv = s.substr(comma + 1, next == std::string::npos ? std::string::npos : next - comma - 1);
        comma = next;
        size_t eq = kv.find('=');
        if (eq == std::string::npos) throw UserError("--net '" + s + "': expected opt=value, got '" + kv + "'");
        std::string k = kv.substr(0, eq), v = kv.substr(eq + 1);
        if (std::find(seen.begin(), seen.end(), k) != seen.end())
            throw UserError("--net: option '" + k + "' given twice");
        seen.push_back(k);
        if (k == "mac") {
            if (!std::regex_match(v, mac)) throw UserError("--net: bad MAC address '" + v + "'");
            std::array<uint8_t, 6> m;
            for (int i = 0; i < 6; i++) m[i] = static_cast<uint8_t>(std::stoul(v.substr(3 * i, 2), nullptr, 16));
            // The guest could not take a group address as its own.
            if (m[0] & 1) throw UserError("--net: MAC address '" + v + "' is multicast");
            n.mac = m;
        } else if (k == "vhost") {
            if (v == "off") n.vhost = NetSpec::Datapath::Off;
            else if (v == "worker") n.vhost = NetSpec::Datapath::Worker;
            else if (v == "kernel") n.vhost = NetSpec::Datapath::Kernel;
            else throw UserError("--net: vhost must be off, worker or kernel, not '" + v + "'");
        } else if (k == "queues") {
            if (!std::regex_match(v, number)) throw UserError("--net: bad queue count '" + v + "'");
            n.queues = static_cast<unsigned>(std::stoul(v));
            if (n.queues > kMaxQueuePairs)
                throw UserError("--net " + n.ifname + ": queues=" + v + " is more than the " +
                                std::to_string(kMaxQueuePairs) + " queue pairs a NIC may have");
        } else if (k == "mtu") {
            static const std::regex mtu(R"([1-9][0-9]{0,5})");
            unsigned long m = std::regex_match(v, mtu) ? std::stoul(v) : 0;
            if (m < net::kMinMtu || m > net::kMaxMtu)
                throw UserError("--net: mtu must be a number from " + std::to_string(net::kMinMtu) + " to " +
                                std::to_string(net::kMaxMtu) + ", not '" + v + "'");
            n.mtu = static_cast<unsigned>(m);
        } else {
            throw UserError("--net: unknown option '" + k + "'");
        }
    }
    // A packet socket is one fd: it has no queues to spread flows over.
    if (n.kind == NetSpec::Kind::Raw && n.queues > 1)
        throw UserError("--net raw=" + n.ifname + ": a raw socket serves one queue pair (queues=1)");
    return n;
}

SeccompMode parse_seccomp(const std::string& s) {
    if (s == "on") return SeccompMode::On;
    if (s == "log") return SeccompMode::Log;
    if (s == "off") return SeccompMode::Off;
    throw UserError("--seccomp must be on, log or off, not '" + s + "'");
}

BootMode parse_boot(const std::string& s) {
    if (s == "direct") return BootMode::Direct;
    if (s == "decompressor") return BootMode::Decompressor;
    throw UserError("--boot must be direct or decompressor, not '" + s + "'");
}

Options parse_cli(int argc, char** argv) {
    enum { kStats = 1000, kSeccomp, kUser, kJail, kBoot, kApiSock, kRestore, kIncoming };
    static const option longopts[] = {
        {"kernel", required_argument, nullptr, 'k'}, {"initrd", required_argument, nullptr, 'i'},
        {"cmdline", required_argument, nullptr, 'c'}, {"mem", required_argument, nullptr, 'm'},
        {"cpus", required_argument, nullptr, 'p'},   {"net", required_argument, nullptr, 'n'},
        {"verbose", no_argument, nullptr, 'v'},      {"stats", no_argument, nullptr, kStats},
        {"seccomp", required_argument, nullptr, kSeccomp}, {"user", required_argument, nullptr, kUser},
        {"jail", required_argument, nullptr, kJail}, {"boot", required_argument, nullptr, kBoot},
        {"api-sock", required_argument, nullptr, kApiSock}, {"restore", required_argument, nullptr, kRestore},
        {"incoming", required_argument, nullptr, kIncoming},
        {"help", no_argument, nullptr, 'h'},         {"version", no_argument, nullptr, 'V'},
        {nullptr, 0, nullptr, 0},
    };
    Options o;
    opterr = 0;  // we print our own single line
    optind = 0;  // 0, not 1: makes glibc forget state left by an earlier parse
    int c;
    while ((c = getopt_long(argc, argv, ":k:i:c:m:p:n:vhV", longopts, nullptr)) != -1) {
        switch (c) {
            case 'k': o.kernel = optarg; break;
            case 'i': o.initrd = optarg; break;
            case 'c': o.cmdline = optarg; break;
            case 'm': o.mem = parse_size(optarg); break;
            case 'p': {
                static const std::regex num(R"([1-9][0-9]{0,3})");
                if (!std::regex_match(std::string(optarg), num))
                    throw UserError(std::string("--cpus: expected a number from 1, got '") + optarg + "'");
                o.cpus = static_cast<unsigned>(std::stoul(optarg));
                // The MADT describes CPUs with 8-bit xAPIC IDs (0xff is broadcast).
                if (o.cpus > kMaxCpus)
                    throw UserError("--cpus " + std::to_string(o.cpus) + " is more than the " +
                                    std::to_string(kMaxCpus) + " vCPUs minivmm supports");
                break;
            }
            case 'n':
                o.nets.push_back(parse_net(optarg));
                if (o.nets.size() > kMaxNics)
                    throw UserError("more than " + std::to_string(kMaxNics) + " --net NICs (one PCI slot each)");
                break;
            case 'v': o.verbose = true; break;
            case kStats: o.stats = true; break;
            case kSeccomp: o.seccomp = parse_seccomp(optarg); break;
            case kUser: o.user = optarg; break;
            case kJail: o.jail = optarg; break;
            case kBoot: o.boot = parse_boot(optarg); break;
            case kApiSock:
                if (!*optarg) throw UserError("--api-sock: empty path");
                o.api_sock = optarg;
                break;
            case kRestore:
                if (!*optarg) throw UserError("--restore: empty path");
                o.restore = optarg;
                break;
            case kIncoming:
                parse_migration_uri(optarg);  // a bad address is the user's to hear of first
                o.incoming = optarg;
                break;
            case 'h': o.help = true; break;
            case 'V': o.version = true; break;
            case ':': throw UserError(std::string("option '") + argv[optind - 1] + "' needs a value");
            default: throw UserError(std::string("unknown option '") + argv[optind - 1] + "' (see --help)");
        }
    }
    if (optind < argc) throw UserError(std::string("unexpected argument '") + argv[optind] + "' (see --help)");
    if (o.help || o.version) return o;
    if (o.restore && o.incoming) throw UserError("--restore and --incoming: a guest comes from one or the other");
    if (o.restore || o.incoming) {
        // The saved guest's RAM holds its kernel, initrd and command line.
        const char* boot_option = !o.kernel.empty() ? "--kernel" : !o.initrd.empty() ? "--initrd"
                                  : o.cmdline ? "--cmdline" : o.boot ? "--boot" : nullptr;
        if (boot_option)
            throw UserError(std::string(o.restore ? "--restore" : "--incoming") + " continues a running guest: " +
                            boot_option + " has nothing to boot (drop it)");
        return o;
    }
    if (o.kernel.empty()) throw UserError("no kernel given: use --kernel PATH (see --help)");
    return o;
}

std::string guest_cmdline(const Options& o) {
    std::string user = o.cmdline.value_or("");
    // Without a console= the kernel talks to a VGA screen this machine lacks.
    bool has_console = std::regex_search(user, std::regex(R"((^|\s)console=)"));
    std::string added = has_console ? "" : "console=ttyS0";
    if (user.empty()) return added;
    return added.empty() ? user : added + " " + user;
}

}  // namespace minivmm
