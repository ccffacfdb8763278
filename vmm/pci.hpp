// Conventional PCI: one bus, configuration mechanism #1 at ports 0xCF8/0xCFC
// (what Linux probes when ACPI has no MCFG), memory BARs in the 32-bit hole.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "vmm/io_bus.hpp"
#include "vmm/state_stream.hpp"

namespace minivmm {

// One function's 256-byte configuration space and its memory BARs. Devices
// subclass it and serve their BARs through bar_read/bar_write.
class PciDevice {
public:
    static constexpr int kBars = 6;
    PciDevice(uint16_t vendor, uint16_t device, uint32_t class_code, uint8_t revision);
    virtual ~PciDevice() = default;

    // Configuration space access as the guest sees it: read-only fields stay,
    // BARs answer the sizing protocol, capabilities are read-only to the guest
    // except where a subclass says otherwise.
    uint32_t config_read(uint32_t reg);  // reg is dword aligned
    void config_write(uint32_t reg, uint32_t value, uint32_t byte_mask);

    // A 32-bit, non-prefetchable memory BAR of size bytes (a power of two >= 4 KiB).
    void add_bar(int index, uint32_t size);
    uint32_t bar_size(int index) const { return bar_size_[index]; }
    uint64_t bar_address(int index) const;
    void set_bar_address(int index, uint64_t gpa);  // firmware's job: minivmm does it
    bool memory_enabled() const { return cfg_[4] & 2; }
    // Where guest accesses reach the BAR through PciBus now: its address, or
    // 0 while memory decoding is off or the BAR is outside the bus's window
    // (as it is while the guest sizes it with decoding on).
    uint64_t decoded_address(int index) const;

    // Appends a capability; returns its offset. body excludes the ID and next bytes.
    uint8_t add_capability(uint8_t id, const std::vector<uint8_t>& body);

    // Saved state (pci_state.cpp): the configuration space as the guest left
    // it. load_config() is for a function fresh from construction, of the
    // same configuration: what the guest cannot write must match, what it
    // can must be a value it could have written. BARs decode where the guest
    // put them, as after its own config writes. `who` names the function.
    void save_config(state::Writer& w) const;
    void load_config(state::Reader& r, const std::string& who);

    virtual void bar_read(int bar, uint64_t offset, uint8_t* data, uint32_t size) = 0;
    virtual void bar_write(int bar, uint64_t offset, const uint8_t* data, uint32_t size) = 0;

protected:
    // Memory space, bus master, and INTx disable: the command bits a virtio
    // device can honour. I/O space stays off, there are no I/O BARs.
    static constexpr uint16_t kCommandWritable = (1u << 1) | (1u << 2) | (1u << 10);
    // Called after the guest wrote to a capability dword the subclass owns.
    virtual bool capability_writable(uint32_t reg) const { (void)reg; return false; }
    virtual void capability_written(uint32_t reg) { (void)reg; }
    // Called before the guest reads a capability dword (for registers that
    // are windows onto something else).
    virtual void capability_reading(uint32_t reg) { (void)reg; }
    // Called after the guest wrote the command register or a BAR, and after
    // set_bar_address: decoded_address() may have changed. Under the bus's
    // lock, so no other config write moves the BARs meanwhile.
    virtual void decoding_changed() {}
    // load_config(): whether a capability dword the guest may write could
    // hold v; the subclass restores what it stands for itself.
    virtual bool capability_loadable(uint32_t reg, uint32_t v) const { (void)reg, (void)v; return true; }
    std::array<uint8_t, 256> cfg_{};

private:
    std::array<uint32_t, kBars> bar_size_{};
    uint8_t next_cap_ = 0x40, last_cap_ = 0;
};

// Bus 0: the host bridge at 00.0 and devices at 01.0, 02.0, ... Also the MMIO
// handler for the whole PCI window, so BARs the guest moves keep working.
class PciBus : public IoDevice {
public:
    static constexpr uint16_t kConfigPort = 0xcf8, kConfigLen = 8;
    static constexpr uint64_t kWindowStart = 0xc000'0000ull, kWindowEnd = 0xfec0'0000ull;

    PciBus();
    // Returns the slot number; assigns the device's BARs in the window.
    unsigned add(std::shared_ptr<PciDevice> dev);
    // IoDevice for the configuration ports.
    void read(uint64_t offset, uint8_t* data, uint32_t size) override;
    void write(uint64_t offset, const uint8_t* data, uint32_t size) override;
    IoDevice& mmio() { return mmio_; }
    // Saved state (pci_state.cpp): the configuration address register and
    // the host bridge's config space; the other functions save their own.
    void save(state::Writer& w);
    void load(state::Reader& r);

private:
    class Mmio : public IoDevice {
    public:
        explicit Mmio(PciBus& bus) : bus_(bus) {}
        void read(uint64_t offset, uint8_t* data, uint32_t size) override;
        void write(uint64_t offset, const uint8_t* data, uint32_t size) override;

    private:
        PciBus& bus_;
    };
    // The device and BAR decoding window address gpa, or nullptr.
    PciDevice* decode(uint64_t gpa, uint32_t size, int& bar, uint64_t& offset);
    PciDevice* selected(uint32_t& reg);

    std::mutex lock_;  // config address register and BAR moves vs. decoding
    uint32_t address_ = 0;
    uint64_t next_bar_ = kWindowStart;
    std::vector<std::shared_ptr<PciDevice>> slots_;
    Mmio mmio_{*this};
};

}  // namespace minivmm
