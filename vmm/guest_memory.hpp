// Guest RAM: one anonymous mapping, split around the PC's 32-bit MMIO hole.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace minivmm {

// RAM below the hole ends here; the last GiB under 4 GiB belongs to devices
// (PCI BARs, IOAPIC, LAPIC), as on every PC chipset a Linux guest knows.
constexpr uint64_t kMmioHoleStart = 0xC000'0000ull;
constexpr uint64_t kMmioHoleEnd = 0x1'0000'0000ull;

// Guest-physical addresses to host pointers, bounds-checked: what device
// code (the virtqueue) may touch. GuestMemory is the VMM's whole RAM; a vhost
// worker sees only the memory table it was given.
class MemView {
public:
    virtual ~MemView() = default;
    // Host pointer for [gpa, gpa+len), or nullptr unless all of it is RAM.
    virtual uint8_t* ptr(uint64_t gpa, uint64_t len) const = 0;
};

struct MemRegion {
    uint64_t gpa;
    uint64_t size;
    uint8_t* hva;
};

class GuestMemory : public MemView {
public:
    // Lazily backed (MAP_NORESERVE anonymous memory): pages cost host RAM only
    // once the guest touches them.
    explicit GuestMemory(uint64_t size);
    ~GuestMemory();
    GuestMemory(const GuestMemory&) = delete;
    GuestMemory& operator=(const GuestMemory&) = delete;

    // Splits [0, size) of RAM into the guest-physical regions either side of the hole.
    static std::vector<MemRegion> layout(uint64_t size);

    const std::vector<MemRegion>& regions() const { return regions_; }
    uint64_t size() const { return size_; }
    // Host pointer for [gpa, gpa+len), or nullptr unless the whole range lies in
    // one RAM region. Every guest-supplied address goes through here.
    uint8_t* ptr(uint64_t gpa, uint64_t len) const override;
    // Typed access for fixed structures the VMM itself places.
    template <typename T>
    T* at(uint64_t gpa) const { return reinterpret_cast<T*>(ptr(gpa, sizeof(T))); }

private:
    uint64_t size_;
    uint8_t* base_ = nullptr;
    std::vector<MemRegion> regions_;
};

}  // namespace minivmm
