// What the control socket's commands do to the Machine: its ApiTarget side,
// served on the API thread (vmm/api_socket.hpp) while the vCPUs run.
#include <cstdio>
#include <system_error>

#include "vmm/machine.hpp"
#include "vmm/seccomp.hpp"
#include "virtio/device.hpp"
#include "virtio/virtio_pci.hpp"

namespace minivmm {

using json = nlohmann::ordered_json;

namespace {
// How long pause waits for every vCPU to leave the guest: one busy on a
// long exit (a NIC reset) parks when it is done.
constexpr std::chrono::seconds kPauseLimit{10};

json nic_fields(const DeviceStats& s) {
    return {{"name", s.label},
            {"backend", s.attached},
            {"datapath", s.datapath},
            {"queue_pairs", s.pairs},
            {"queue_pairs_in_use", s.pairs_in_use}};
}
}  // namespace

Thread Machine::start_api(const std::function<void()>& wait_filtered) {
    started_ = std::chrono::steady_clock::now();
    for (auto& v : vcpus_) v->attach_pause(&pause_);
    if (!api_) return {};
    try {
        return Thread([this, wait_filtered] {
            guarded("API", [&] {
                enter_thread(ThreadKind::Api, "API");
                wait_filtered();
                api_->serve(stop_.fd(), *this);
            });
            // However serve() ended: the path goes with the thread that owns it.
            api_->remove();
        });
    } catch (const std::system_error& e) {
        // The main thread is not yet filtered: it can remove the path itself.
        api_->remove();
        stop_.request(2, "internal error: cannot start the API thread: " + e.code().message());
        return {};
    }
}

json Machine::status() {
    double up = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    json nics = json::array();
    for (const auto& d : devices_) {
        const VirtioDevice& dev = d->device();
        json n = {{"name", dev.label()}, {"describe", dev.describe()}};
        if (auto s = dev.stats()) n.update(nic_fields(*s));
        nics.push_back(std::move(n));
    }
    return {{"state", stop_.requested() ? "stopping" : pause_.paused() ? "paused" : "running"},
            {"uptime_s", static_cast<double>(static_cast<long long>(up * 1000)) / 1000},
            {"vcpus", vcpus_.size()},
            {"memory_mib", opts_.mem >> 20},
            {"nics", std::move(nics)}};
}

json Machine::stats(const std::string& nic) {
    json nics = json::array();
    for (const auto& d : devices_) {
        auto s = d->device().stats();
        if (!s || (!nic.empty() && s->label != nic)) continue;
        json queues = json::array();
        for (const QueueCounters& q : s->queues) {
            if (!q.visible) {
                // The kernel's vhost-net serves it: its counters are not ours to see.
                queues.push_back({{"name", q.name}, {"visible", false}});
                continue;
            }
            queues.push_back({{"name", q.name},
                              {"visible", true},
                              {"packets", q.packets},
                              {"bytes", q.bytes},
                              {"notifications", q.notifications},
                              {"interrupts", q.interrupts},
                              {"errors", q.errors}});
        }
        json n = nic_fields(*s);
        n["queues"] = std::move(queues);
        nics.push_back(std::move(n));
    }
    if (!nic.empty() && nics.empty()) throw ApiError("no NIC '" + nic + "'");
    uint64_t io = 0, mmio = 0;
    for (const auto& v : vcpus_) io += v->stats.io_exits, mmio += v->stats.mmio_exits;
    return {{"nics", std::move(nics)}, {"vcpu_exits", {{"port_io", io}, {"mmio", mmio}}}};
}

json Machine::pause() {
    auto kick_all = [this] {
        for (auto& v : vcpus_) v->kick();
    };
    if (!pause_.pause(static_cast<unsigned>(vcpus_.size()), stop_, kick_all, kPauseLimit)) {
        if (stop_.requested()) throw ApiError("the VM is stopping");
        throw ApiError("only " + std::to_string(pause_.parked()) + " of " + std::to_string(vcpus_.size()) +
                       " vCPUs paused within " + std::to_string(kPauseLimit.count()) +
                       " s; the others pause when their exit is done (resume cancels)");
    }
    return {{"state", "paused"}};
}

json Machine::resume() {
    pause_.resume();
    return {{"state", "running"}};
}

json Machine::quit() {
    stop_.request(0, "stopped by the control socket (quit)");
    return {{"state", "stopping"}};
}

}  // namespace minivmm
