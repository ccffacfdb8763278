// CPU time the backend spends, whichever it is: every thread of this process
// but the benchmark's own (the worker's ring threads), plus the kernel's
// vhost-net thread serving it, which on Linux 6.1 is a kernel thread named
// vhost-<pid of its owner> outside the process (newer kernels make it a
// thread of the process, counted with the others). From schedstat's
// nanoseconds on a CPU, so the wall-clock rates next to it can be read as
// cost, not only as what scheduling allowed.
#pragma once
#include <dirent.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>

namespace bench {

inline uint64_t cpu_ns(const std::string& schedstat) {
    std::ifstream f(schedstat);
    uint64_t ns = 0;
    f >> ns;
    return ns;
}

inline uint64_t backend_cpu_ns() {
    uint64_t total = 0;
    const std::string self = std::to_string(::getpid()), me = std::to_string(::syscall(SYS_gettid));
    if (DIR* d = ::opendir("/proc/self/task")) {
        while (dirent* e = ::readdir(d))
            if (e->d_name[0] != '.' && me != e->d_name)
                total += cpu_ns(std::string("/proc/self/task/") + e->d_name + "/schedstat");
        ::closedir(d);
    }
    if (DIR* d = ::opendir("/proc")) {
        while (dirent* e = ::readdir(d)) {
            if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
            std::ifstream comm(std::string("/proc/") + e->d_name + "/comm");
            std::string name;
            if (std::getline(comm, name) && name == "vhost-" + self)
                total += cpu_ns(std::string("/proc/") + e->d_name + "/schedstat");
        }
        ::closedir(d);
    }
    return total;
}

}  // namespace bench
