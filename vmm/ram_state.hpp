// Guest RAM in saved state: pages as Ram records, runs of zero pages as
// RamZero records (an idle guest's RAM is mostly zero: a 512 MiB snapshot
// of a booted guest holds tens of MiB). A migration sends RAM in rounds of
// dirty ranges through the same calls; loading the same page twice just
// overwrites it.
#pragma once
#include <cstdint>

#include "vmm/guest_memory.hpp"
#include "vmm/state_records.hpp"

namespace minivmm::state {

constexpr uint64_t kPage = 4096;
// Pages per Ram record: small enough for the reader's bound, large enough
// that a record's own bytes do not count.
constexpr uint64_t kRamRecordPages = 256;

struct RamCounts {
    uint64_t pages = 0;       // sent with their contents
    uint64_t zero_pages = 0;  // sent as zero runs
};

// [gpa, gpa+len) must be whole pages of one RAM region.
RamCounts save_ram_range(const GuestMemory& mem, RecordWriter& w, uint64_t gpa, uint64_t len);
RamCounts save_ram(const GuestMemory& mem, RecordWriter& w);
// One Ram or RamZero record into RAM. Addresses and lengths come from the
// stream: anything not whole pages inside RAM is refused.
void load_ram_record(GuestMemory& mem, const Record& r);

}  // namespace minivmm::state
