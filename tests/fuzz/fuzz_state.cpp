// The byte form of a vCPU's and the VM's saved KVM state (vcpu_state.hpp,
// vm_state.hpp), as a hostile stream or an edited snapshot file gives it.
// The first byte picks the section and how the rest is read: as the whole
// section, or as edits (overwrite, insert, erase, cut) to a valid one, which
// reaches past the first bound. Either it is refused with state::Error, or
// what was read holds the reader's bounds and writes out as a section that
// reads back to the same bytes.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "tests/fuzz/fuzz_check.hpp"
#include "vmm/vcpu_state.hpp"
#include "vmm/vm_state.hpp"

using namespace minivmm;

namespace {

std::vector<uint8_t> valid_vcpu() {
    VcpuState s;
    s.xsave.assign(4096 + 64, 0);
    s.xcrs.emplace();
    s.xcrs->nr_xcrs = 1;
    s.debugregs.emplace();
    for (uint32_t m : {0x10u, 0x174u, 0x6e0u}) s.msrs.push_back({m, 0, m});
    state::Writer w;
    write_vcpu_state(w, s);
    return w.take();
}

std::vector<uint8_t> valid_vm() {
    VmState s;
    s.ioapic.base_address = 0xfec00000;
    state::Writer w;
    write_vm_state(w, s);
    return w.take();
}

void edit(std::vector<uint8_t>& b, const uint8_t* e, size_t n) {
    for (size_t i = 0; i + 4 <= n; i += 4) {
        size_t at = size_t(e[i] | e[i + 1] << 8);
        uint8_t op = e[i + 2] & 3, v = e[i + 3];
        if (b.empty()) return;
        at %= b.size();
        if (op == 0) b[at] = v;
        else if (op == 1) b.insert(b.begin() + long(at), v);
        else if (op == 2) b.erase(b.begin() + long(at));
        else b.resize(at);
    }
}

template <class Read, class Write>
void check_section(const std::vector<uint8_t>& in, Read read, Write write) {
    std::vector<uint8_t> out;
    try {
        state::Reader r(in, "fuzz");
        auto s = read(r);
        state::Writer w;
        write(w, s);
        out = w.take();
    } catch (const state::Error&) {
        return;  // refused: the one way a bad section may end
    }
    state::Reader r2(out, "fuzz again");
    auto again = read(r2);  // what was written must read
    state::Writer w2;
    write(w2, again);
    CHECK(w2.data() == out);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    bool vm = data[0] & 1, edits = data[0] & 2;
    std::vector<uint8_t> in;
    if (edits) {
        in = vm ? valid_vm() : valid_vcpu();
        edit(in, data + 1, size - 1);
    } else {
        in.assign(data + 1, data + size);
    }
    if (vm) {
        check_section(in, [](state::Reader& r) { return read_vm_state(r); },
                      [](state::Writer& w, const VmState& s) { write_vm_state(w, s); });
    } else {
        check_section(
            in,
            [](state::Reader& r) {
                VcpuState s = read_vcpu_state(r);
                CHECK(s.msrs.size() <= kMaxSavedMsrs);
                CHECK(s.xsave.empty() || (s.xsave.size() >= kXsaveLegacySize && s.xsave.size() <= kMaxXsaveBytes));
                CHECK(!s.xcrs || s.xcrs->nr_xcrs <= KVM_MAX_XCRS);
                return s;
            },
            [](state::Writer& w, const VcpuState& s) { write_vcpu_state(w, s); });
    }
    return 0;
}
