// Counters of one virtqueue, which a user reads with --stats, SIGUSR1 or the
// control socket's stats; kept by whatever serves the queue. A device's
// counters are taken as data (DeviceStats) and printed from it, so the
// printed and the socket's forms have one source.
#pragma once
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace minivmm {

// One queue's counters at one moment. visible is false for a queue served
// by the kernel's vhost-net, whose counters minivmm cannot see.
struct QueueCounters {
    std::string name;  // "rx0", "tx0", "ctrl"
    bool visible = true;
    uint64_t packets = 0, bytes = 0, notifications = 0, interrupts = 0, errors = 0;
};

struct QueueStats {
    std::atomic<uint64_t> packets{0}, bytes{0}, notifications{0}, interrupts{0}, errors{0};
    QueueCounters snapshot(const std::string& name) const;
    void print(std::FILE* f, const char* name) const;
};

// A device's counters: what it is attached to and each of its queues.
struct DeviceStats {
    std::string label;     // "net0"
    std::string attached;  // the host side, as its backend describes it ("tap tap0")
    std::string datapath;  // "off", "worker", "kernel"
    unsigned pairs = 0, pairs_in_use = 0;
    std::vector<QueueCounters> queues;
};

// The --stats form: a header line, then a line per queue.
void print_device_stats(std::FILE* f, const DeviceStats& s);

}  // namespace minivmm
