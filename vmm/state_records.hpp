// The record layer of saved state (state_stream.hpp): what a snapshot file
// and a migration stream are made of. Reads and writes go straight to an fd
// (a file, a unix or TCP socket), a record at a time.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vmm/state_stream.hpp"

namespace minivmm::state {

// The format's version: a reader refuses any other. Raise it whenever a
// section's layout or the set of records changes. 2: a migration ends in
// three steps (the destination's Ack "ready", the source's Go); a version 1
// destination would run the guest without waiting for Go.
constexpr uint32_t kVersion = 2;

// How long a write may make no progress (a migration's destination that
// stopped reading, a pipe whose reader is stuck) before it fails.
constexpr int kStallMs = 30'000;

enum class Kind : uint32_t {
    Config = 1,   // the source's configuration, checked before anything loads
    Ram = 2,      // body: u64 guest address, then whole pages
    RamZero = 3,  // body: u64 guest address, u64 page count: pages that are all zero
    Section = 4,  // one device's (or vCPU's, or the VM's) state, named
    End = 5,      // the state is complete
    Ack = 6,      // from a migration's destination: "ready" (all loaded) or "refused" (body: why)
    Go = 7,       // from a migration's source, after "ready": the guest is the destination's now
};

struct Record {
    Kind kind;
    std::string name;
    std::vector<uint8_t> body;
};

// Bounds a reader holds a record to: larger ones are refused before any
// allocation, so a hostile stream cannot make minivmm allocate at will.
constexpr size_t kMaxName = 64;
constexpr size_t kMaxBody = 8u << 20;

// Writes never wait for ever: a socket, pipe or other stream that takes
// nothing for stall_ms (-1: no limit) fails the write with Error, and one
// passed with O_NONBLOCK is waited for, not failed, when it is full. A
// regular file is written as it comes.
class RecordWriter {
public:
    explicit RecordWriter(int fd, int stall_ms = kStallMs) : fd_(fd), stall_ms_(stall_ms) {}
    void header();  // magic and version
    void write(Kind kind, const std::string& name, std::span<const uint8_t> body);
    uint64_t bytes_written() const { return written_; }

private:
    enum class Sink { Unknown, Socket, File, Stream };
    void put(const void* p, size_t n);
    void wait_writable();
    int fd_, stall_ms_;
    Sink sink_ = Sink::Unknown;
    uint64_t written_ = 0;
};

class RecordReader {
public:
    // what: the source, for errors ("snapshot vm.snap", "migration stream").
    // stall_ms: how long the fd may stay silent before a read fails with
    // Error (-1: for ever, as for a file).
    RecordReader(int fd, std::string what, int stall_ms = -1)
        : fd_(fd), stall_ms_(stall_ms), what_(std::move(what)) {}
    void header();  // refuses anything but our magic and kVersion
    // The next record, checked whole (bounds, then CRC). Throws Error on a
    // short read or a bad record.
    Record read();
    // The same, all of it within timeout_ms (an answer that must come in
    // time, not merely keep trickling).
    Record read_within(int timeout_ms);
    // After a read that threw: whether the fd had ended cleanly, where a
    // record would start (a peer that closed), rather than mid-record.
    bool ended() const { return ended_; }

private:
    void get(void* p, size_t n, bool record_start = false);
    void wait_readable();
    int fd_, stall_ms_;
    bool ended_ = false;
    std::string what_;
    int64_t deadline_ms_ = -1;  // steady clock, for read_within
    int deadline_total_ms_ = 0;
};

}  // namespace minivmm::state
