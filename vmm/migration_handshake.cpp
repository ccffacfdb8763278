#include "vmm/migration_handshake.hpp"

#include <poll.h>

#include "vmm/state_records.hpp"

namespace minivmm::migration {

std::string printable(const std::vector<uint8_t>& text) {
    // The peer's words go into this process's log and the migrate reply:
    // short, and nothing a terminal would act on.
    constexpr size_t kMax = 256;
    std::string s;
    for (size_t i = 0; i < text.size() && i < kMax; i++) s += text[i] >= 0x20 && text[i] < 0x7f ? char(text[i]) : '?';
    if (text.size() > kMax) s += "...";
    return s;
}

void await_ready(int fd, int timeout_ms) {
    state::RecordReader r(fd, "the destination");
    state::Record ack;
    try {
        ack = r.read_within(timeout_ms);
    } catch (const state::Error& e) {
        if (r.ended()) throw state::Error("the destination closed the connection without saying it has the guest");
        throw;
    }
    std::string why = printable(ack.body);
    if (ack.kind == state::Kind::Ack && ack.name == "ready") return;
    if (ack.kind == state::Kind::Ack && ack.name == "refused") throw state::Error("the destination refused: " + why);
    throw state::Error("the destination answered with something other than ready or refused");
}

void send_go(int fd, int stall_ms) {
    // A destination that said ready and then went away (killed, out of
    // memory) leaves a TCP socket that still takes a write: the hang-up is
    // seen first, so the guest resumes here rather than running nowhere.
    pollfd p{fd, POLLIN | POLLRDHUP, 0};
    if (::poll(&p, 1, 0) > 0) throw state::Error("the destination hung up or spoke after saying ready; no go sent");
    state::RecordWriter w(fd, stall_ms);
    w.write(state::Kind::Go, "", {});
}

void answer(int fd, const std::string& verdict, const std::string& why) {
    try {
        state::RecordWriter w(fd, state::kStallMs);
        w.write(state::Kind::Ack, verdict, {reinterpret_cast<const uint8_t*>(why.data()), why.size()});
    } catch (const std::exception&) {
        // The source is gone: it resumes its guest (await_go then says so).
    }
}

void await_go(int fd, const std::string& what, int timeout_ms) {
    state::RecordReader r(fd, what);
    state::Record go;
    try {
        go = r.read_within(timeout_ms);
    } catch (const state::Error& e) {
        if (r.ended())
            throw state::Error(what + ": the source closed the connection before its go (it runs the guest on); "
                               "the guest was not started here");
        throw state::Error(std::string(e.what()) + " (waiting for the source's go); the guest was not started here");
    }
    if (go.kind != state::Kind::Go)
        throw state::Error(what + ": the source sent record kind " + std::to_string(int(go.kind)) +
                           " instead of go; the guest was not started here");
}

}  // namespace minivmm::migration
