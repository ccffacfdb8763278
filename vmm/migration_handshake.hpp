// How a live migration ends: which of the two processes runs the guest.
// Never both: the destination loads the whole state, answers Ack "ready"
// (or "refused" and why), and starts the guest only on the source's Go; the
// source counts the guest gone only once its Go is written, and resumes it
// on anything else (no answer in time, a refusal, a write that fails). The
// one window left is a Go written but lost in flight (vmm/README.md).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace minivmm::migration {

// How long the source waits for "ready" after the End record: the
// destination has the state by then and loads only its last sections.
constexpr int kReadyTimeoutMs = 30'000;
// How long the destination waits for Go after its "ready": the source
// writes it as soon as it reads "ready".
constexpr int kGoTimeoutMs = 30'000;

// A peer's text (a refusal's reason) as it may be logged: at most 256
// printable ASCII characters.
std::string printable(const std::vector<uint8_t>& text);

// The source. Returns on "ready"; throws state::Error on a refusal (its
// reason in the message), any other record, the connection's end, or
// nothing complete within timeout_ms.
void await_ready(int fd, int timeout_ms = kReadyTimeoutMs);
// The source: the commit. Throws state::Error if Go cannot be written
// (within stall_ms); then the guest must run on at the source.
void send_go(int fd, int stall_ms);

// The destination: "ready" or "refused" with why. A source that is gone
// is not an error here: it has resumed its guest, or will.
void answer(int fd, const std::string& verdict, const std::string& why = {});
// The destination: returns on Go; throws state::Error on anything else,
// the connection's end (the source resumed its guest), or no Go within
// timeout_ms. what names the stream in the error ("migration on unix:...").
void await_go(int fd, const std::string& what, int timeout_ms = kGoTimeoutMs);

}  // namespace minivmm::migration
