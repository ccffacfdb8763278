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
// section's layout changes.
constexpr uint32_t kVersion = 1;

enum class Kind : uint32_t {
    Config = 1,   // the source's configuration, checked before anything loads
    Ram = 2,      // body: u64 guest address, then whole pages
    RamZero = 3,  // body: u64 guest address, u64 page count: pages that are all zero
    Section = 4,  // one device's (or vCPU's, or the VM's) state, named
    End = 5,      // the state is complete
    Ack = 6,      // from a migration's destination: name says what it confirms
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

class RecordWriter {
public:
    explicit RecordWriter(int fd) : fd_(fd) {}
    void header();  // magic and version
    void write(Kind kind, const std::string& name, std::span<const uint8_t> body);
    uint64_t bytes_written() const { return written_; }

private:
    void put(const void* p, size_t n);
    int fd_;
    bool socket_ = true;  // until send says otherwise
    uint64_t written_ = 0;
};

class RecordReader {
public:
    // what: the source, for errors ("snapshot vm.snap", "migration stream").
    RecordReader(int fd, std::string what) : fd_(fd), what_(std::move(what)) {}
    void header();  // refuses anything but our magic and kVersion
    // The next record, checked whole (bounds, then CRC). Throws Error on a
    // short read or a bad record.
    Record read();

private:
    void get(void* p, size_t n);
    int fd_;
    std::string what_;
};

}  // namespace minivmm::state
