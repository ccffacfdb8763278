// Live migration, the source side (the control socket's migrate): RAM is
// sent while the guest runs, then again in rounds what was written
// meanwhile (vmm/dirty_pages.hpp: the vCPUs' writes from KVM, the NICs'
// from the vhost log), until what is left is small; then the guest is
// paused, its NICs let go of their host ports, and the rest of RAM and the
// machine's state go out. The end is three steps (migration_handshake.hpp):
// the destination says it has loaded everything ("ready"), this process
// writes Go and only then lets go; anything else (the destination missing,
// refusing, dying, silent or stuck, Go not written) undoes the pause and the
// guest runs on here.
#include <poll.h>

#include <chrono>
#include <cstdio>

#include "vmm/dirty_pages.hpp"
#include "vmm/machine.hpp"
#include "vmm/migration_handshake.hpp"
#include "vmm/ram_state.hpp"
#include "vmm/state_records.hpp"
#include "virtio/device.hpp"
#include "virtio/virtio_pci.hpp"

namespace minivmm {

using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

namespace {
// Pages left dirty that are sent with the guest paused: 8 MiB, a few ms on
// a local link, so the pause is the device state's and the destination's
// start-up, not RAM's.
constexpr uint64_t kSwitchPages = 2048;
// A guest that dirties RAM faster than it is sent would never converge:
// after this many rounds the rest goes with the guest paused.
constexpr unsigned kMaxRounds = 30;

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

uint64_t pages_in(const std::vector<PageRun>& runs) {
    uint64_t n = 0;
    for (const PageRun& r : runs) n += r.len / state::kPage;
    return n;
}

struct Sent {
    uint64_t pages = 0, zero_pages = 0;
    void add(const state::RamCounts& c) { pages += c.pages, zero_pages += c.zero_pages; }
};

void send_runs(const GuestMemory& mem, state::RecordWriter& w, const std::vector<PageRun>& runs, Sent& sent) {
    for (const PageRun& r : runs) sent.add(state::save_ram_range(mem, w, r.gpa, r.len));
}

// After a failed write: a destination that refused the stream said why
// before it closed the connection (its Ack "refused"). Empty if it did not.
std::string refusal(int fd) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 2000) <= 0) return {};
    try {
        state::RecordReader r(fd, "the destination");
        state::Record ack = r.read_within(2000);
        if (ack.kind == state::Kind::Ack && ack.name == "refused") return migration::printable(ack.body);
    } catch (const std::exception&) {
    }
    return {};
}

// Clean-up that must not throw: after Go, or while the guest is being
// given back, a failure is said once and the rest goes on.
template <class F>
void quietly(const char* what, F&& f) noexcept {
    try {
        f();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "\r\nminivmm: migration: %s: %s\n", what, e.what());
    }
}
}  // namespace

json Machine::migrate(Fd conn, const std::string& uri) {
    auto t0 = Clock::now();
    bool paused_here = false, frozen = false, released = false;
    double downtime = 0;
    uint64_t bytes = 0;
    Sent sent;
    unsigned rounds = 0;
    DirtyPages dirty(vm_, mem_);
    auto logging = [&](bool on) {
        DirtyBitmap log = on ? DirtyBitmap(dirty.vhost_log(), dirty.vhost_log_bytes()) : DirtyBitmap();
        for (const auto& d : devices_) d->device().set_dirty_log(log);
    };
    try {
        // Logging first, then the first copy: a page written after it was
        // sent is in the next round.
        dirty.start();
        logging(true);
        state::RecordWriter w(conn.get());
        w.header();
        w.write(state::Kind::Config, "shape", shape(opts_).save());
        sent.add(state::save_ram(mem_, w));
        rounds = 1;
        std::vector<PageRun> left = dirty.collect();
        while (pages_in(left) > kSwitchPages && rounds < kMaxRounds) {
            send_runs(mem_, w, left, sent);
            rounds++;
            left = dirty.collect();
        }
        // The switch-over: from here the guest waits.
        auto paused_at = Clock::now();
        paused_here = freeze();
        frozen = true;
        // On one host the destination's NICs attach to the same taps: ours go first.
        for (const auto& d : devices_) d->device().set_host_attached(false);
        released = true;
        send_runs(mem_, w, left, sent);
        send_runs(mem_, w, dirty.collect(), sent);  // what the last round, the vCPUs' last steps and the rings' wrote
        save_sections(w);
        bytes = w.bytes_written();
        migration::await_ready(conn.get());
        downtime = ms_since(paused_at);
        // The commit: once Go is written the guest is the destination's,
        // and nothing below may resume it here.
        migration::send_go(conn.get(), state::kStallMs);
    } catch (const std::exception& e) {
        std::string why = e.what();
        if (std::string refused = refusal(conn.get()); !refused.empty()) why = "the destination refused: " + refused;
        // Nothing lost: the guest goes on here as it was.
        quietly("turning the NICs' dirty log off", [&] { logging(false); });
        quietly("turning KVM's dirty log off", [&] { dirty.stop(); });
        if (released)
            for (const auto& d : devices_)
                quietly("taking the tap back", [&] { d->device().set_host_attached(true); });
        if (frozen)
            quietly("resuming the guest", [&] {
                try {
                    thaw(paused_here);
                } catch (...) {
                    if (paused_here) pause_.resume();  // the vCPUs at least, whatever a device did
                    throw;
                }
            });
        std::fprintf(stderr, "\r\nminivmm: migration to %s failed after %.0f ms: %s; the guest runs on here\n",
                     uri.c_str(), ms_since(t0), why.c_str());
        throw ApiError("migrate " + uri + ": " + why + " (the guest runs on here)");
    }
    double total = ms_since(t0);
    stop_.request(0, "migrated to " + uri + ": the guest runs there now");
    quietly("turning the NICs' dirty log off", [&] { logging(false); });
    quietly("turning KVM's dirty log off", [&] { dirty.stop(); });
    std::fprintf(stderr,
                 "\r\nminivmm: migrated to %s: %.0f ms in all, the guest paused %.0f ms; %u rounds, %llu pages "
                 "(%llu zero) in %.1f MiB\n",
                 uri.c_str(), total, downtime, rounds, (unsigned long long)sent.pages,
                 (unsigned long long)sent.zero_pages, double(bytes) / (1 << 20));
    return {{"state", "migrated"},
            {"uri", uri},
            {"total_ms", static_cast<long long>(total)},
            {"downtime_ms", static_cast<long long>(downtime)},
            {"rounds", rounds},
            {"pages", sent.pages},
            {"zero_pages", sent.zero_pages},
            {"bytes", bytes}};
}

}  // namespace minivmm
