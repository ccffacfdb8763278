// Saving the whole machine and loading it back: the control socket's
// snapshot, --restore, and (with RAM sent in rounds) migration. What a
// saved machine is, in stream order: its shape (checked before anything
// loads), its RAM, the legacy devices and the PCI bus, each vCPU, the VM's
// in-kernel chips and clock, then each PCI device with its rings'
// positions, then End. vCPUs after RAM because writing the kvmclock MSRs
// makes KVM write guest memory; the VM after its vCPUs, its clock last
// (vmm/vcpu_state.cpp says why); devices last because an active virtio
// device starts its datapath as it loads, reading the rings in RAM and
// raising interrupts that need the vCPUs' LAPICs in place.
#include <unistd.h>

#include <exception>
#include <set>

#include "vmm/machine.hpp"
#include "vmm/machine_shape.hpp"
#include "vmm/ram_state.hpp"
#include "vmm/state_records.hpp"
#include "virtio/device.hpp"
#include "virtio/virtio_pci.hpp"

namespace minivmm {

using json = nlohmann::ordered_json;

namespace {
std::string vcpu_section(size_t i) { return "vcpu" + std::to_string(i); }

template <class F>
std::vector<uint8_t> section(F&& save) {
    state::Writer w;
    save(w);
    return w.take();
}
}  // namespace

state::MachineShape Machine::shape(const Options& o) {
    state::MachineShape s{o.mem, o.cpus, {}};
    for (const NetSpec& n : o.nets) s.nic_pairs.push_back(n.queues);
    return s;
}

state::RamCounts Machine::save_state(state::RecordWriter& w) {
    w.header();
    w.write(state::Kind::Config, "shape", shape(opts_).save());
    state::RamCounts ram = state::save_ram(mem_, w);
    save_sections(w);
    return ram;
}

void Machine::save_sections(state::RecordWriter& w) {
    w.write(state::Kind::Section, "serial", section([&](state::Writer& s) { serial_->save(s); }));
    w.write(state::Kind::Section, "acpi-pm", section([&](state::Writer& s) { pm_.save(s); }));
    w.write(state::Kind::Section, "pci-bus", section([&](state::Writer& s) { pci_.save(s); }));
    for (size_t i = 0; i < vcpus_.size(); i++)
        w.write(state::Kind::Section, vcpu_section(i), section([&](state::Writer& s) { vcpus_[i]->save_state(s); }));
    w.write(state::Kind::Section, "vm", section([&](state::Writer& s) { vm_.save_state(s); }));
    // Devices last: an active one starts its datapath as it loads, and an
    // interrupt it raises must find the vCPUs' local APICs already loaded
    // (one raised into a reset LAPIC is dropped, and that queue would wait
    // for it for ever).
    for (const auto& d : devices_)
        w.write(state::Kind::Section, d->device().label(), section([&](state::Writer& s) { d->save(s); }));
    w.write(state::Kind::End, "", {});
}

void Machine::load_state(state::RecordReader& r) {
    std::set<std::string> expected = {"vm", "serial", "acpi-pm", "pci-bus"};
    for (const auto& d : devices_) expected.insert(d->device().label());
    for (size_t i = 0; i < vcpus_.size(); i++) expected.insert(vcpu_section(i));
    bool attached = false;
    for (;;) {
        state::Record rec = r.read();
        switch (rec.kind) {
            case state::Kind::Ram:
            case state::Kind::RamZero: state::load_ram_record(mem_, rec); continue;
            case state::Kind::Section: break;
            case state::Kind::End:
                if (!expected.empty()) throw state::Error("saved state lacks the state of " + *expected.begin());
                loaded_ = true;  // run() restarts the queues and announces the NICs
                return;
            default: throw state::Error("saved state has a record out of place (kind " + std::to_string(int(rec.kind)) + ")");
        }
        // The first state after RAM: a migration's source has paused the
        // guest and let go of its taps, so this machine's NICs take them.
        if (opts_.incoming && !attached) {
            for (const auto& d : devices_) d->device().set_host_attached(true);
            attached = true;
        }
        if (!expected.erase(rec.name)) throw state::Error("saved state has unexpected or repeated state '" + rec.name + "'");
        state::Reader in(rec.body, rec.name);
        if (rec.name == "vm") {
            vm_.load_state(in);
        } else if (rec.name == "serial") {
            serial_->load(in);
        } else if (rec.name == "acpi-pm") {
            pm_.load(in);
        } else if (rec.name == "pci-bus") {
            pci_.load(in);
        } else if (rec.name.starts_with("vcpu")) {
            vcpus_[std::stoul(rec.name.substr(4))]->load_state(in);
        } else {
            for (const auto& d : devices_)
                if (d->device().label() == rec.name) d->load(in, mem_);
        }
        in.expect_end();
    }
}

void Machine::start_loaded_devices() {
    if (!loaded_) return;
    for (const auto& d : devices_) d->restart_after_load();
    for (const auto& d : devices_) d->device().announce();
}

bool Machine::freeze() {
    bool pausing = !pause_.paused();
    try {
        if (pausing) pause();  // throws ApiError when it cannot
        for (const auto& d : devices_) d->quiesce();
    } catch (...) {
        thaw(pausing);  // a device not quiesced resumes as a no-op
        throw;
    }
    return pausing;
}

void Machine::thaw(bool paused_here) {
    // Every device and then the vCPUs, whatever one device's resume throws:
    // the guest runs on with the others. The first failure is rethrown.
    std::exception_ptr first;
    for (const auto& d : devices_) {
        try {
            d->resume();
        } catch (...) {
            if (!first) first = std::current_exception();
        }
    }
    if (paused_here) pause_.resume();  // a pause that timed out too: its request stays until resumed
    if (first) std::rethrow_exception(first);
}

json Machine::snapshot(Fd file, const std::string& name, bool stop) {
    auto t0 = std::chrono::steady_clock::now();
    bool was_paused = !freeze();
    std::string failure;
    state::RamCounts ram;
    uint64_t bytes = 0;
    try {
        state::RecordWriter w(file.get());
        ram = save_state(w);
        bytes = w.bytes_written();
        // On disk before the reply says it is saved (a pipe or socket has nothing to sync).
        if (::fdatasync(file.get()) < 0 && errno != EINVAL && errno != EROFS)
            throw state::Error(std::string("syncing: ") + std::strerror(errno));
    } catch (const std::exception& e) {
        failure = e.what();
    }
    double paused_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (stop && failure.empty()) {
        stop_.request(0, "stopped after the snapshot to " + name);
    } else {
        thaw(!was_paused);
    }
    if (!failure.empty()) throw ApiError("snapshot " + name + ": " + failure + " (the VM runs on)");
    return {{"file", name},
            {"bytes", bytes},
            {"ram_pages", ram.pages},
            {"zero_pages", ram.zero_pages},
            {"paused_ms", static_cast<long long>(paused_ms)},
            {"state", stop ? "stopping" : was_paused ? "paused" : "running"}};
}

}  // namespace minivmm
