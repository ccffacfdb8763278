#include "vmm/thread.hpp"

#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <utility>
#include <vector>

namespace minivmm {
namespace {

size_t own_stack_size() {
    pthread_attr_t attr;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        pthread_attr_getstacksize(&attr, &size);
        pthread_attr_destroy(&attr);
    }
    return size;
}

TEST(Thread, RunsTheBodyOnAStackOfTheGivenSize) {
    size_t seen = 0;
    Thread t([&] { seen = own_stack_size(); });
    ASSERT_TRUE(t.joinable());
    t.join();
    EXPECT_FALSE(t.joinable());
    // At least that, and under 2 MiB, so a transparent huge page cannot
    // back it (glibc hands over a cached stack of up to 4 times the size).
    EXPECT_GE(seen, Thread::kStackBytes);
    EXPECT_LT(seen, size_t(2) << 20);

    // Asked for more, it gets at least that (glibc may hand over a cached
    // stack larger than asked for, never smaller).
    Thread big([&] { seen = own_stack_size(); }, 1 << 20);
    big.join();
    EXPECT_GE(seen, size_t(1) << 20);
    EXPECT_LT(seen, size_t(2) << 20);
}

TEST(Thread, MovesLikeStdThread) {
    std::atomic<int> ran{0};
    std::vector<Thread> threads;
    for (int i = 0; i < 4; i++) threads.emplace_back([&] { ran++; });
    Thread moved = std::move(threads[0]);
    EXPECT_FALSE(threads[0].joinable());
    EXPECT_TRUE(moved.joinable());
    moved.join();
    for (size_t i = 1; i < threads.size(); i++) threads[i].join();
    EXPECT_EQ(ran, 4);
}

TEST(Thread, JoiningNoThreadThrows) {
    Thread t;
    EXPECT_FALSE(t.joinable());
    EXPECT_THROW(t.join(), std::system_error);
}

}  // namespace
}  // namespace minivmm
