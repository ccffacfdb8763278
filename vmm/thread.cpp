#include "vmm/thread.hpp"

#include <cerrno>
#include <exception>
#include <memory>
#include <system_error>

namespace minivmm {

namespace {
void* trampoline(void* arg) {
    std::unique_ptr<std::function<void()>> body(static_cast<std::function<void()>*>(arg));
    (*body)();
    return nullptr;
}

std::system_error thread_error(int err, const char* what) { return {err, std::generic_category(), what}; }
}  // namespace

Thread::Thread(std::function<void()> body, size_t stack_bytes) {
    pthread_attr_t attr;
    if (int err = pthread_attr_init(&attr)) throw thread_error(err, "pthread_attr_init");
    int err = pthread_attr_setstacksize(&attr, stack_bytes);
    auto arg = std::make_unique<std::function<void()>>(std::move(body));
    if (!err) err = pthread_create(&id_, &attr, trampoline, arg.get());
    pthread_attr_destroy(&attr);
    if (err) throw thread_error(err, "cannot start thread");
    arg.release();  // the thread owns it now
    running_ = true;
}

Thread& Thread::operator=(Thread&& o) noexcept {
    if (running_) std::terminate();
    id_ = o.id_;
    running_ = o.running_;
    o.running_ = false;
    return *this;
}

Thread::~Thread() {
    if (running_) std::terminate();
}

void Thread::join() {
    if (!running_) throw thread_error(EINVAL, "join: no thread");
    if (int err = pthread_join(id_, nullptr)) throw thread_error(err, "pthread_join");
    running_ = false;
}

}  // namespace minivmm
