// What a saved machine must have in common with the one loading it: RAM
// size, vCPUs, NICs and their queue pairs. Backends, ports and everything
// on the host side may differ; these may not, or the guest's view of its
// hardware would change under it.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace minivmm::state {

struct MachineShape {
    uint64_t mem = 0;
    uint32_t cpus = 0;
    std::vector<uint32_t> nic_pairs;  // one entry per NIC, in PCI order

    std::vector<uint8_t> save() const;
    static MachineShape load(std::span<const uint8_t> body, const std::string& what);
    // Empty when they match; otherwise one line saying the first difference
    // (the saved machine's value, then this one's).
    std::string mismatch(const MachineShape& mine) const;
};

}  // namespace minivmm::state
