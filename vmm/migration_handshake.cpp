#include "vmm/migration_handshake.hpp"

#include "vmm/state_records.hpp"

namespace minivmm::migration {

void await_ready(int fd, int timeout_ms) {
    state::RecordReader r(fd, "the destination");
    state::Record ack;
    try {
        ack = r.read_within(timeout_ms);
    } catch (const state::Error& e) {
        if (r.ended()) throw state::Error("the destination closed the connection without saying it has the guest");
        throw;
    }
    std::string why(ack.body.begin(), ack.body.end());
    if (ack.kind == state::Kind::Ack && ack.name == "ready") return;
    if (ack.kind == state::Kind::Ack && ack.name == "refused") throw state::Error("the destination refused: " + why);
    throw state::Error("the destination answered with something other than ready or refused");
}

void send_go(int fd, int stall_ms) {
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
