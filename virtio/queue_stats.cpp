#include "virtio/queue_stats.hpp"

namespace minivmm {

QueueCounters QueueStats::snapshot(const std::string& name) const {
    return {name, true, packets, bytes, notifications, interrupts, errors};
}

namespace {
void print_queue(std::FILE* f, const QueueCounters& q) {
    if (!q.visible) {
        std::fprintf(f, "  %s: served by the kernel's vhost-net (its counters are not visible here)\n",
                     q.name.c_str());
        return;
    }
    std::fprintf(f, "  %s: %llu packets, %llu bytes, %llu notifications, %llu interrupts, %llu errors\n",
                 q.name.c_str(), (unsigned long long)q.packets, (unsigned long long)q.bytes,
                 (unsigned long long)q.notifications, (unsigned long long)q.interrupts, (unsigned long long)q.errors);
}
}  // namespace

void QueueStats::print(std::FILE* f, const char* name) const { print_queue(f, snapshot(name)); }

void print_device_stats(std::FILE* f, const DeviceStats& s) {
    std::fprintf(f, "minivmm: %s (%s, vhost=%s, %u queue pair%s, %u in use):\n", s.label.c_str(), s.attached.c_str(),
                 s.datapath.c_str(), s.pairs, s.pairs > 1 ? "s" : "", s.pairs_in_use);
    for (const auto& q : s.queues) print_queue(f, q);
}

}  // namespace minivmm
