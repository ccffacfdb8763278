#include "vmm/thread_guard.hpp"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>

namespace minivmm {

namespace {
std::mutex g_lock;
FatalHandler g_handler;
}  // namespace

void set_fatal_handler(FatalHandler h) {
    std::lock_guard g(g_lock);
    g_handler = std::move(h);
}

void guarded(const std::string& thread, const std::function<void()>& body) noexcept {
    std::string line;
    try {
        body();
        return;
    } catch (const std::exception& e) {
        line = thread + ": " + e.what();
    } catch (...) {
        line = thread + ": unknown exception";
    }
    FatalHandler h;
    {
        std::lock_guard g(g_lock);
        h = g_handler;
    }
    if (!h) {
        std::fprintf(stderr, "minivmm: internal error: %s\n", line.c_str());
        std::abort();
    }
    h(line);
}

}  // namespace minivmm
