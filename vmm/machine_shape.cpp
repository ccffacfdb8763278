#include "vmm/machine_shape.hpp"

#include "vmm/state_stream.hpp"

namespace minivmm::state {

namespace {
constexpr uint32_t kMaxNicsSaved = 64;  // above kMaxNics: a stream with more is refused by mismatch()
}

std::vector<uint8_t> MachineShape::save() const {
    Writer w;
    w.u64(mem);
    w.u32(cpus);
    w.u32(static_cast<uint32_t>(nic_pairs.size()));
    for (uint32_t p : nic_pairs) w.u32(p);
    return w.take();
}

MachineShape MachineShape::load(std::span<const uint8_t> body, const std::string& what) {
    Reader in(body, what);
    MachineShape s;
    s.mem = in.u64();
    s.cpus = in.u32();
    uint32_t n = in.u32();
    if (n > kMaxNicsSaved) in.fail(std::to_string(n) + " NICs");
    for (uint32_t i = 0; i < n; i++) s.nic_pairs.push_back(in.u32());
    in.expect_end();
    return s;
}

std::string MachineShape::mismatch(const MachineShape& mine) const {
    auto mib = [](uint64_t b) { return std::to_string(b >> 20) + " MiB"; };
    if (mem != mine.mem) return "the saved machine has " + mib(mem) + " of RAM, this one " + mib(mine.mem) + " (--mem)";
    if (cpus != mine.cpus)
        return "the saved machine has " + std::to_string(cpus) + " vCPU(s), this one " + std::to_string(mine.cpus) +
               " (--cpus)";
    if (nic_pairs.size() != mine.nic_pairs.size())
        return "the saved machine has " + std::to_string(nic_pairs.size()) + " NIC(s), this one " +
               std::to_string(mine.nic_pairs.size()) + " (--net)";
    for (size_t i = 0; i < nic_pairs.size(); i++)
        if (nic_pairs[i] != mine.nic_pairs[i])
            return "the saved machine's net" + std::to_string(i) + " has " + std::to_string(nic_pairs[i]) +
                   " queue pair(s), this one's " + std::to_string(mine.nic_pairs[i]) + " (--net ...,queues=)";
    return {};
}

}  // namespace minivmm::state
