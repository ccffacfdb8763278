// DirtyPages against a real KVM, where its clean-up can fail: a destructor
// reached while a failed migration unwinds says so in one line and returns
// (an exception from it would end minivmm, guest and all). Needs /dev/kvm:
// runs with MINIVMM_TEST_KVM=1, as tests/unit/kvm_state_test.cpp does.
#include "vmm/dirty_pages.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "vmm/guest_memory.hpp"
#include "vmm/kvm.hpp"

using namespace minivmm;

TEST(MigrationDirtyPages, AFailedStopInTheDestructorIsOneLineNotAThrow) {
    const char* v = std::getenv("MINIVMM_TEST_KVM");
    if (!v || std::string(v) != "1") GTEST_SKIP() << "needs /dev/kvm (MINIVMM_TEST_KVM=1)";
    Kvm kvm;
    Vm vm{kvm};
    GuestMemory mem{16 << 20};
    const MemRegion& r = mem.regions().front();
    vm.set_memory(0, r.gpa, r.size, r.hva);
    std::string err;
    {
        DirtyPages dirty(vm, mem);
        dirty.start();
        // Slot 0 taken away and its addresses given to slot 1: KVM refuses
        // slot 0 back when logging stops (the ranges overlap).
        vm.set_memory(0, r.gpa, 0, r.hva);
        vm.set_memory(1, r.gpa, r.size, r.hva);
        ::testing::internal::CaptureStderr();
    }
    err = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("minivmm: migration: turning KVM's dirty log off:"), std::string::npos) << err;
    EXPECT_EQ(err.find('\n', err.find("minivmm:")), err.size() - 1) << "more than one line: " << err;
}
