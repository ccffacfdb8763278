// Shared by the unit tests: a minimal valid bzImage in memory, and the
// names of this process's threads.
#pragma once
#include <dirent.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "vmm/error.hpp"

namespace minivmm::testing {

// The UserError f throws, or "(no error)".
inline std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const UserError& e) {
        return e.what();
    }
    return "(no error)";
}

// Boot sector + one setup sector + payload, with the header fields the
// loader checks. Fields are poked at their boot-protocol offsets.
inline std::vector<uint8_t> fake_bzimage(size_t payload = 4096, uint16_t version = 0x020f,
                                         uint32_t init_size = 0x200000) {
    std::vector<uint8_t> f(1024 + payload, 0x90);
    auto put = [&](size_t off, uint64_t v, int n) {
        for (int i = 0; i < n; i++) f[off + i] = static_cast<uint8_t>(v >> (8 * i));
    };
    std::memset(f.data(), 0, 1024);
    put(0x1f1, 1, 1);  // setup_sects
    put(0x1fe, 0xaa55, 2);
    put(0x200, 0xeb, 1);
    put(0x201, 0x66, 1);
    std::memcpy(&f[0x202], "HdrS", 4);
    put(0x206, version, 2);
    put(0x211, 1, 1);  // LOADED_HIGH
    put(0x22c, 0x7fffffff, 4);
    put(0x236, 1, 2);  // XLF_KERNEL_64
    put(0x238, 2048, 4);
    put(0x260, init_size, 4);
    return f;
}

// Names of this process's threads that start with prefix, one a thread.
inline std::vector<std::string> threads_named(const std::string& prefix) {
    std::vector<std::string> names;
    DIR* d = ::opendir("/proc/self/task");
    while (dirent* e = d ? ::readdir(d) : nullptr) {
        std::ifstream comm(std::string("/proc/self/task/") + e->d_name + "/comm");
        std::string name;
        if (std::getline(comm, name) && name.rfind(prefix, 0) == 0) names.push_back(name);
    }
    if (d) ::closedir(d);
    return names;
}

}  // namespace minivmm::testing
