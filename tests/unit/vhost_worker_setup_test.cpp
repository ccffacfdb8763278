// What the worker backend needs before any ring starts.
#include <sys/resource.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>

#include "tests/unit/vhost_rig.hpp"
#include "vmm/error.hpp"

using namespace minivmm;
using namespace minivmm::testing;

// Each ring's thread is stopped through an eventfd: a backend that cannot
// have one is refused before any thread could start.
TEST(VhostWorker, NoEventfdForStoppingIsAnError) {
    rlimit old;
    ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
    int lowest = ::dup(0);  // the next fd number handed out
    ASSERT_GE(lowest, 0);
    ::close(lowest);
    rlimit low = old;
    low.rlim_cur = static_cast<rlim_t>(lowest);  // so no new fd fits
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
    std::string what;
    try {
        make_worker_vhost(1, "nofd");
    } catch (const UserError& e) {
        what = e.what();
    }
    ::setrlimit(RLIMIT_NOFILE, &old);
    EXPECT_NE(what.find("eventfd"), std::string::npos) << "got: '" << what << "'";
}
