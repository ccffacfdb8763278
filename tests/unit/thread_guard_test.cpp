// An exception on any of minivmm's threads must become one line for the VM's
// stop, never std::terminate (which would leave the terminal raw).
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <thread>

#include "vmm/error.hpp"
#include "vmm/thread_guard.hpp"

using namespace minivmm;

TEST(ThreadGuard, ExceptionOnAThreadReachesTheHandlerAsOneLine) {
    std::string got;
    set_fatal_handler([&](const std::string& line) { got = line; });
    std::thread t([] { guarded("vhost-net0-rx0", [] { throw internal_error("KVM IRQFD failed", EINVAL); }); });
    t.join();
    set_fatal_handler(nullptr);
    EXPECT_EQ(got, "vhost-net0-rx0: KVM IRQFD failed: Invalid argument");
}

TEST(ThreadGuard, ABodyThatReturnsCallsNoHandler) {
    bool called = false, ran = false;
    set_fatal_handler([&](const std::string&) { called = true; });
    guarded("vCPU 0", [&] { ran = true; });
    set_fatal_handler(nullptr);
    EXPECT_TRUE(ran);
    EXPECT_FALSE(called);
}

TEST(ThreadGuardDeathTest, WithoutAHandlerItSaysWhatFailedAndAborts) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(guarded("net0-io0", [] { throw std::runtime_error("boom"); }),
                 "minivmm: internal error: net0-io0: boom");
}
