#include <gtest/gtest.h>

#include <cstring>

#include "tests/unit/state_file.hpp"
#include "tests/unit/test_helpers.hpp"
#include "vmm/machine_shape.hpp"
#include "vmm/ram_state.hpp"

using namespace minivmm;
using namespace minivmm::state;
using namespace minivmm::testing;

namespace {

constexpr uint64_t kMem = 64ull << 20;

// Saves all of src and loads it into dst; returns the counts.
RamCounts copy_ram(const GuestMemory& src, GuestMemory& dst) {
    Fd f = temp_file();
    RecordWriter w(f.get());
    RamCounts c = save_ram(src, w);
    w.write(Kind::End, "", {});
    ::lseek(f.get(), 0, SEEK_SET);
    RecordReader r(f.get(), "t");
    for (Record rec = r.read(); rec.kind != Kind::End; rec = r.read()) load_ram_record(dst, rec);
    return c;
}

Record ram_record(uint64_t gpa, uint64_t pages) {
    Writer b;
    b.u64(gpa);
    std::vector<uint8_t> data(pages * kPage, 0xab);
    b.bytes(data.data(), data.size());
    return {Kind::Ram, "ram", b.take()};
}

Record zero_record(uint64_t gpa, uint64_t pages) {
    Writer b;
    b.u64(gpa);
    b.u64(pages);
    return {Kind::RamZero, "ram", b.take()};
}

}  // namespace

TEST(RamState, PagesAndZeroRunsRoundTrip) {
    GuestMemory src(kMem), dst(kMem);
    std::memset(src.ptr(0x1000, 3 * kPage), 0x5a, 3 * kPage);
    std::memset(src.ptr(kMem - 2 * kPage, 2 * kPage), 0x77, 2 * kPage);  // the last pages
    src.ptr(0x200000, 1)[100] = 1;  // one byte makes a page non-zero
    std::memset(dst.ptr(0x800000, kPage), 0xee, kPage);  // zero in src: must be zeroed in dst
    RamCounts c = copy_ram(src, dst);
    EXPECT_EQ(c.pages, 6u);
    EXPECT_EQ(c.pages + c.zero_pages, kMem / kPage);
    EXPECT_EQ(std::memcmp(src.ptr(0, kMem), dst.ptr(0, kMem), kMem), 0);
}

TEST(RamState, LongRunsSplitIntoBoundedRecords) {
    GuestMemory src(kMem), dst(kMem);
    std::memset(src.ptr(0, 8 << 20), 0x11, 8 << 20);  // 2048 pages: more than one record's worth
    copy_ram(src, dst);
    EXPECT_EQ(std::memcmp(src.ptr(0, kMem), dst.ptr(0, kMem), kMem), 0);
}

TEST(RamState, RecordsOutsideRamAreRefused) {
    GuestMemory mem(kMem);
    EXPECT_THROW(load_ram_record(mem, ram_record(kMem, 1)), Error);
    EXPECT_THROW(load_ram_record(mem, ram_record(kMem - kPage, 2)), Error);
    EXPECT_THROW(load_ram_record(mem, ram_record(0x10, 1)), Error);  // not aligned
    EXPECT_THROW(load_ram_record(mem, zero_record(kMem - kPage, 2)), Error);
    EXPECT_THROW(load_ram_record(mem, zero_record(0, 0)), Error);
    EXPECT_THROW(load_ram_record(mem, zero_record(0, ~0ull / kPage)), Error);
    EXPECT_THROW(load_ram_record(mem, zero_record(~0ull & ~(kPage - 1), 1)), Error);
    Record partial = ram_record(0, 1);
    partial.body.pop_back();  // not whole pages
    EXPECT_THROW(load_ram_record(mem, partial), Error);
    EXPECT_NO_THROW(load_ram_record(mem, ram_record(kMem - kPage, 1)));
}

TEST(MachineShape, RoundTripsAndNamesTheFirstDifference) {
    MachineShape a{512ull << 20, 2, {2, 1}};
    MachineShape b = MachineShape::load(a.save(), "t");
    EXPECT_EQ(b.mismatch(a), "");
    MachineShape other = a;
    other.mem = 1024ull << 20;
    EXPECT_NE(a.mismatch(other).find("512 MiB of RAM, this one 1024 MiB"), std::string::npos);
    other = a;
    other.cpus = 1;
    EXPECT_NE(a.mismatch(other).find("2 vCPU(s), this one 1"), std::string::npos);
    other = a;
    other.nic_pairs = {2};
    EXPECT_NE(a.mismatch(other).find("NIC"), std::string::npos);
    other = a;
    other.nic_pairs = {2, 2};
    EXPECT_NE(a.mismatch(other).find("net1 has 1 queue pair(s), this one's 2"), std::string::npos);
    auto bytes = a.save();
    bytes.pop_back();
    EXPECT_THROW(MachineShape::load(bytes, "t"), Error);
}
