#include "vmm/acpi.hpp"

#include <cstring>
#include <string>

#include "vmm/error.hpp"
#include "vmm/guest_memory.hpp"
#include "vmm/layout.hpp"
#include "vmm/pci.hpp"

namespace minivmm {

uint8_t acpi_checksum(const uint8_t* p, size_t n) {
    uint8_t s = 0;
    for (size_t i = 0; i < n; i++) s = static_cast<uint8_t>(s + p[i]);
    return s;
}

namespace {

// A table under construction: little-endian appends, header fixed up at the end.
class Table {
public:
    explicit Table(const char sig[4], uint8_t revision) {
        bytes_.resize(36);
        std::memcpy(&bytes_[0], sig, 4);
        bytes_[8] = revision;
        std::memcpy(&bytes_[10], "MINVMM", 6);
        std::memcpy(&bytes_[16], "MINIVMM ", 8);
        put_at(24, 1, 4);                 // OEM revision
        std::memcpy(&bytes_[28], "MVMM", 4);  // creator
        put_at(32, 1, 4);
    }
    void u8(uint64_t v) { put(v, 1); }
    void u16(uint64_t v) { put(v, 2); }
    void u32(uint64_t v) { put(v, 4); }
    void u64(uint64_t v) { put(v, 8); }
    void raw(const std::vector<uint8_t>& b) { bytes_.insert(bytes_.end(), b.begin(), b.end()); }
    void pad_to(size_t len) { bytes_.resize(len, 0); }
    void put_at(size_t off, uint64_t v, int n) {
        for (int i = 0; i < n; i++) bytes_[off + i] = static_cast<uint8_t>(v >> (8 * i));
    }
    // A Generic Address Structure for a port in system I/O space.
    void gas_io(size_t off, uint16_t port, uint8_t bits) {
        put_at(off, 1, 1);  // address space: system I/O
        put_at(off + 1, bits, 1);
        put_at(off + 2, 0, 1);
        put_at(off + 3, bits <= 8 ? 1 : bits <= 16 ? 2 : 3, 1);  // access size
        put_at(off + 4, port, 8);
    }
    std::vector<uint8_t> finish() {
        put_at(4, bytes_.size(), 4);
        bytes_[9] = 0;
        bytes_[9] = static_cast<uint8_t>(-acpi_checksum(bytes_.data(), bytes_.size()));
        return bytes_;
    }

private:
    void put(uint64_t v, int n) {
        for (int i = 0; i < n; i++) bytes_.push_back(static_cast<uint8_t>(v >> (8 * i)));
    }
    std::vector<uint8_t> bytes_;
};

// Places blobs one after another in the BIOS area, each aligned as ACPI asks.
class Placer {
public:
    explicit Placer(GuestMemory& mem) : mem_(mem) {}
    uint64_t place(const std::vector<uint8_t>& b, uint64_t align = 16) {
        next_ = (next_ + align - 1) & ~(align - 1);
        uint8_t* p = next_ + b.size() <= layout::kAcpiEnd ? mem_.ptr(next_, b.size()) : nullptr;
        if (!p) throw UserError("ACPI tables do not fit below 1 MiB");
        std::memcpy(p, b.data(), b.size());
        uint64_t at = next_;
        next_ += b.size();
        return at;
    }
    uint64_t reserve(size_t n) {
        uint64_t at = (next_ + 15) & ~15ull;
        next_ = at + n;
        return at;
    }

private:
    GuestMemory& mem_;
    uint64_t next_ = layout::kAcpi;
};

// AML encoding helpers (ACPI 6, 20.2): just what the DSDT below needs.
using Bytes = std::vector<uint8_t>;
Bytes cat(std::initializer_list<Bytes> parts) {
    Bytes out;
    for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
}
// PkgLength counts its own bytes; 1 byte up to 63, else 2 bytes up to 4095.
Bytes pkg(const Bytes& body) {
    size_t n = body.size() + 1;
    if (n <= 63) return cat({{uint8_t(n)}, body});
    n++;
    if (n > 0xfff) throw std::logic_error("AML package too long");
    return cat({{uint8_t(0x40 | (n & 0xf)), uint8_t(n >> 4)}, body});
}
Bytes le(uint64_t v, int n) {
    Bytes b;
    for (int i = 0; i < n; i++) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
    return b;
}
Bytes nameseg(const char* s) { return Bytes(s, s + 4); }
Bytes name(const char* n, const Bytes& value) { return cat({{0x08}, nameseg(n), value}); }
Bytes dword(uint32_t v) { return cat({{0x0c}, le(v, 4)}); }
Bytes buffer(const Bytes& data) { return cat({{0x11}, pkg(cat({{0x0b}, le(data.size(), 2), data}))}); }
Bytes device(const char* n, const Bytes& body) { return cat({{0x5b, 0x82}, pkg(cat({nameseg(n), body}))}); }
Bytes scope(const Bytes& path, const Bytes& body) { return cat({{0x10}, pkg(cat({path, body}))}); }

// Word/DWord address space descriptors (6.4.3.5): a range the bridge
// forwards (producer, fixed min and max).
Bytes word_range(uint8_t type, uint8_t type_flags, uint16_t min, uint16_t max) {
    return cat({{0x88, 13, 0, type, 0x0c, type_flags}, le(0, 2), le(min, 2), le(max, 2), le(0, 2),
                le(uint32_t(max) - min + 1, 2)});
}
Bytes dword_memory(uint32_t min, uint32_t max) {
    // Type flags: read-write, non-cacheable: device registers.
    return cat({{0x87, 23, 0, 0, 0x0c, 0x01}, le(0, 4), le(min, 4), le(max, 4), le(0, 4), le(max - min + 1ull, 4)});
}

// The PCI host bridge. With ACPI, Linux finds PCI only through a PNP0A03
// device; its _CRS says which bus numbers, ports and memory it forwards.
Bytes pci_root() {
    Bytes crs = cat({word_range(2, 0, 0, 0),                                   // bus 0 only
                     {0x47, 0x01}, le(PciBus::kConfigPort, 2), le(PciBus::kConfigPort, 2), {1, PciBus::kConfigLen},
                     word_range(1, 3, 0x0000, PciBus::kConfigPort - 1),         // I/O ports around CF8-CFF
                     word_range(1, 3, PciBus::kConfigPort + PciBus::kConfigLen, 0xffff),
                     dword_memory(PciBus::kWindowStart, PciBus::kWindowEnd - 1),  // the BAR window
                     {0x79, 0}});                                                // end tag
    Bytes body = cat({name("_HID", dword(0x030ad041)),  // EisaId("PNP0A03")
                      name("_UID", {0x00}), name("_SEG", {0x00}), name("_BBN", {0x00}), name("_CRS", buffer(crs))});
    return scope({0x5c, '_', 'S', 'B', '_'}, device("PCI0", body));
}

std::vector<uint8_t> dsdt() {
    Table t("DSDT", 2);
    t.raw(pci_root());
    // Name (_S5, Package (4) { 5, 5, 0, 0 }): the SLP_TYP values for soft-off.
    t.raw({0x08, '_', 'S', '5', '_', 0x12, 0x08, 0x04, 0x0a, AcpiPorts::kSlpTypS5, 0x0a,
           AcpiPorts::kSlpTypS5, 0x00, 0x00});
    return t.finish();
}

std::vector<uint8_t> facs() {
    std::vector<uint8_t> f(64, 0);
    std::memcpy(f.data(), "FACS", 4);
    f[4] = 64;
    f[32] = 2;  // version
    return f;
}

std::vector<uint8_t> fadt(uint64_t facs_at, uint64_t dsdt_at) {
    Table t("FACP", 6);
    t.pad_to(276);
    t.put_at(36, facs_at, 4);
    t.put_at(40, dsdt_at, 4);
    t.put_at(46, AcpiPorts::kSciIrq, 2);
    // SMI_CMD stays 0: there is no SMM, the machine is in ACPI mode from reset.
    t.put_at(56, AcpiPorts::kPm1aEvt, 4);
    t.put_at(64, AcpiPorts::kPm1aCnt, 4);
    t.put_at(88, 4, 1);  // PM1_EVT_LEN
    t.put_at(89, 2, 1);  // PM1_CNT_LEN
    // IAPC_BOOT_ARCH: no VGA (bit 2), no CMOS RTC (bit 5: kvmclock gives the
    // guest wall-clock time, and probing a missing RTC stalls boot for
    // seconds); bit 1 clear says there is no 8042, so Linux does not probe a
    // keyboard that is only a reset line here.
    t.put_at(109, (1u << 2) | (1u << 5), 2);
    // Flags: WBINVD (0), PROC_C1 (2), SLP_BUTTON absent (5), RESET_REG_SUP (10).
    t.put_at(112, (1u << 0) | (1u << 2) | (1u << 5) | (1u << 10), 4);
    t.gas_io(116, AcpiPorts::kReset, 8);
    t.put_at(128, AcpiPorts::kResetValue, 1);
    t.put_at(131, 0, 1);  // FADT minor version
    t.put_at(132, facs_at, 8);
    t.put_at(140, dsdt_at, 8);
    t.gas_io(148, AcpiPorts::kPm1aEvt, 32);
    t.gas_io(172, AcpiPorts::kPm1aCnt, 16);
    uint64_t vendor = 0;
    std::memcpy(&vendor, "MINIVMM", 7);
    t.put_at(268, vendor, 8);  // hypervisor vendor identity
    return t.finish();
}

std::vector<uint8_t> madt(unsigned ncpus) {
    Table t("APIC", 4);
    t.u32(kLapicAddr);
    t.u32(1);  // PCAT_COMPAT: the 8259s exist (KVM's in-kernel PIC)
    for (unsigned i = 0; i < ncpus; i++) {
        t.u8(0), t.u8(8), t.u8(i), t.u8(i), t.u32(1);  // local APIC, enabled
    }
    t.u8(1), t.u8(12), t.u8(0), t.u8(0), t.u32(kIoapicAddr), t.u32(0);  // IOAPIC 0, GSI base 0
    // The SCI is level-triggered, active high on GSI 9.
    t.u8(2), t.u8(10), t.u8(0), t.u8(AcpiPorts::kSciIrq), t.u32(AcpiPorts::kSciIrq), t.u16(0x000d);
    t.u8(4), t.u8(6), t.u8(0xff), t.u16(0), t.u8(1);  // NMI on LINT1 of every CPU
    return t.finish();
}

}  // namespace

uint64_t build_acpi(GuestMemory& mem, unsigned ncpus) {
    Placer at(mem);
    uint64_t rsdp_at = at.reserve(36);
    uint64_t facs_at = at.place(facs(), 64);
    uint64_t dsdt_at = at.place(dsdt());
    uint64_t fadt_at = at.place(fadt(facs_at, dsdt_at));
    uint64_t madt_at = at.place(madt(ncpus));

    Table xsdt("XSDT", 1);
    xsdt.u64(fadt_at), xsdt.u64(madt_at);
    uint64_t xsdt_at = at.place(xsdt.finish());
    Table rsdt("RSDT", 1);
    rsdt.u32(fadt_at), rsdt.u32(madt_at);
    uint64_t rsdt_at = at.place(rsdt.finish());

    uint8_t* r = mem.ptr(rsdp_at, 36);
    std::memset(r, 0, 36);
    std::memcpy(r, "RSD PTR ", 8);
    std::memcpy(r + 9, "MINVMM", 6);
    r[15] = 2;  // ACPI 2.0+: XSDT present
    std::memcpy(r + 16, &rsdt_at, 4);
    uint32_t len = 36;
    std::memcpy(r + 20, &len, 4);
    std::memcpy(r + 24, &xsdt_at, 8);
    r[8] = static_cast<uint8_t>(-acpi_checksum(r, 20));  // covers the ACPI 1.0 part
    r[32] = static_cast<uint8_t>(-acpi_checksum(r, 36));
    return rsdp_at;
}

}  // namespace minivmm
