#include "vmm/ram_state.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>

namespace minivmm::state {

namespace {

bool zero_page(const uint8_t* p) {
    const uint64_t* w = reinterpret_cast<const uint64_t*>(p);
    uint64_t acc = 0;
    for (size_t i = 0; i < kPage / 8; i++) acc |= w[i];
    return acc == 0;
}

void write_pages(RecordWriter& w, uint64_t gpa, const uint8_t* p, uint64_t n) {
    Writer body;
    body.u64(gpa);
    body.bytes(p, n * kPage);
    w.write(Kind::Ram, "ram", body.data());
}

void write_zeros(RecordWriter& w, uint64_t gpa, uint64_t n) {
    Writer body;
    body.u64(gpa);
    body.u64(n);
    w.write(Kind::RamZero, "ram", body.data());
}

}  // namespace

RamCounts save_ram_range(const GuestMemory& mem, RecordWriter& w, uint64_t gpa, uint64_t len) {
    const uint8_t* base = mem.ptr(gpa, len);
    if (!base || gpa % kPage || len % kPage) throw InternalError("saving RAM outside guest memory");
    RamCounts c;
    uint64_t pages = len / kPage, i = 0;
    while (i < pages) {
        // A run of pages that are all zero, or all not, up to a record's worth.
        bool zero = zero_page(base + i * kPage);
        uint64_t j = i + 1;
        while (j < pages && zero_page(base + j * kPage) == zero && (zero || j - i < kRamRecordPages)) j++;
        if (zero) {
            write_zeros(w, gpa + i * kPage, j - i);
            c.zero_pages += j - i;
        } else {
            write_pages(w, gpa + i * kPage, base + i * kPage, j - i);
            c.pages += j - i;
        }
        i = j;
    }
    return c;
}

RamCounts save_ram(const GuestMemory& mem, RecordWriter& w) {
    RamCounts total;
    for (const MemRegion& r : mem.regions()) {
        RamCounts c = save_ram_range(mem, w, r.gpa, r.size);
        total.pages += c.pages;
        total.zero_pages += c.zero_pages;
    }
    return total;
}

void load_ram_record(GuestMemory& mem, const Record& r) {
    Reader in(r.body, "RAM");
    uint64_t gpa = in.u64();
    if (gpa % kPage) in.fail("a page address is not page-aligned");
    if (r.kind == Kind::Ram) {
        uint64_t len = r.body.size() - sizeof gpa;
        uint8_t* dst = mem.ptr(gpa, len);
        if (len == 0 || len % kPage || !dst) in.fail("pages outside guest memory");
        in.bytes(dst, len);
        return;
    }
    uint64_t n = in.u64();
    in.expect_end();
    if (n == 0 || n > mem.size() / kPage) in.fail("a zero run outside guest memory");
    uint8_t* dst = mem.ptr(gpa, n * kPage);
    if (!dst) in.fail("a zero run outside guest memory");
    // Dropping the pages zeroes them (private anonymous memory) and gives
    // the host its memory back, where writing zeros would take it.
    if (::madvise(dst, n * kPage, MADV_DONTNEED) != 0) std::memset(dst, 0, n * kPage);
}

}  // namespace minivmm::state
