#include "vmm/state_records.hpp"

#include <limits.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace minivmm::state {

namespace {

constexpr char kMagic[8] = {'M', 'I', 'N', 'I', 'V', 'M', 'M', 0x1a};

struct RecordHead {
    uint32_t kind, name_len;
    uint64_t body_len;
};

uint32_t crc_of(const RecordHead& h, const void* name, const void* body) {
    uLong c = crc32(0, reinterpret_cast<const Bytef*>(&h), sizeof h);
    // Empty parts add nothing: zlib takes a null buffer (an empty vector's
    // data()) as a request for the initial value, and would start over.
    if (h.name_len) c = crc32(c, static_cast<const Bytef*>(name), h.name_len);
    if (h.body_len) c = crc32(c, static_cast<const Bytef*>(body), static_cast<uInt>(h.body_len));
    return static_cast<uint32_t>(c);
}

bool known(uint32_t kind) { return kind >= uint32_t(Kind::Config) && kind <= uint32_t(Kind::Go); }

std::string duration(int ms) { return ms % 1000 ? std::to_string(ms) + " ms" : std::to_string(ms / 1000) + " s"; }

int64_t now_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

}  // namespace

void RecordWriter::put(const void* p, size_t n) {
    if (sink_ == Sink::Unknown) {
        struct stat st;
        bool known_type = ::fstat(fd_, &st) == 0;
        sink_ = known_type && S_ISSOCK(st.st_mode)                              ? Sink::Socket
                : known_type && (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) ? Sink::File
                                                                               : Sink::Stream;
    }
    auto b = static_cast<const uint8_t*>(p);
    while (n) {
        ssize_t w;
        if (sink_ == Sink::Socket) {
            // A destination gone is EPIPE here, not SIGPIPE ending minivmm
            // with its guest; a full socket is waited for below, bounded,
            // never inside send.
            w = ::send(fd_, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        } else if (sink_ == Sink::File) {
            w = ::write(fd_, b, n);
        } else {
            // A pipe (or anything else that streams) that polls writable
            // takes PIPE_BUF bytes at once even in blocking mode: larger
            // writes could block for as long as its reader likes.
            wait_writable();
            w = ::write(fd_, b, std::min<size_t>(n, PIPE_BUF));
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            wait_writable();
            continue;
        }
        if (w <= 0) throw Error(std::string("writing saved state: ") + (w < 0 ? std::strerror(errno) : "nothing written"));
        b += w;
        n -= size_t(w);
        written_ += uint64_t(w);
    }
}

void RecordWriter::wait_writable() {
    for (;;) {
        pollfd p{fd_, POLLOUT, 0};
        int r = ::poll(&p, 1, stall_ms_);
        if (r > 0) return;  // writable, or an error the write will name
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) throw Error(std::string("writing saved state: poll: ") + std::strerror(errno));
        throw Error("writing saved state: the reader took nothing for " + duration(stall_ms_) + " (stuck?)");
    }
}

void RecordWriter::header() {
    put(kMagic, sizeof kMagic);
    put(&kVersion, sizeof kVersion);
}

void RecordWriter::write(Kind kind, const std::string& name, std::span<const uint8_t> body) {
    if (name.size() > kMaxName || body.size() > kMaxBody) throw InternalError("state record " + name + " is too large");
    RecordHead h{uint32_t(kind), uint32_t(name.size()), body.size()};
    uint32_t crc = crc_of(h, name.data(), body.data());
    put(&h, sizeof h);
    put(name.data(), name.size());
    put(body.data(), body.size());
    put(&crc, sizeof crc);
}

void RecordReader::wait_readable() {
    for (;;) {
        int timeout = stall_ms_;
        bool by_deadline = false;
        if (deadline_ms_ >= 0) {
            int64_t left = std::max<int64_t>(0, deadline_ms_ - now_ms());
            if (timeout < 0 || left < timeout) timeout = int(left), by_deadline = true;
        }
        pollfd p{fd_, POLLIN, 0};
        int r = ::poll(&p, 1, timeout);
        if (r > 0) return;  // data, the end, or an error the read will name
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) throw Error(what_ + ": poll: " + std::strerror(errno));
        if (by_deadline) throw Error(what_ + ": no answer within " + duration(deadline_total_ms_));
        throw Error(what_ + ": nothing arrived for " + duration(stall_ms_));
    }
}

void RecordReader::get(void* p, size_t n, bool record_start) {
    auto b = static_cast<uint8_t*>(p);
    while (n) {
        if (stall_ms_ >= 0 || deadline_ms_ >= 0) wait_readable();
        ssize_t r = ::read(fd_, b, n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            // An fd in non-blocking mode: wait as a blocking read would.
            if (stall_ms_ < 0 && deadline_ms_ < 0) {
                pollfd w{fd_, POLLIN, 0};
                ::poll(&w, 1, -1);
            }
            continue;
        }
        if (r < 0) throw Error(what_ + ": " + std::strerror(errno));
        if (r == 0 && record_start && b == p) {
            ended_ = true;
            throw Error(what_ + ": ends before the next record (closed by the other side?)");
        }
        if (r == 0) throw Error(what_ + ": truncated (ends in the middle of the state)");
        b += r;
        n -= size_t(r);
    }
}

void RecordReader::header() {
    char magic[sizeof kMagic];
    uint32_t version;
    get(magic, sizeof magic);
    if (std::memcmp(magic, kMagic, sizeof magic) != 0) throw Error(what_ + ": not minivmm saved state");
    get(&version, sizeof version);
    if (version != kVersion)
        throw Error(what_ + ": saved state version " + std::to_string(version) + ", this minivmm reads version " +
                    std::to_string(kVersion));
}

Record RecordReader::read_within(int timeout_ms) {
    deadline_ms_ = now_ms() + timeout_ms;
    deadline_total_ms_ = timeout_ms;
    try {
        Record r = read();
        deadline_ms_ = -1;
        return r;
    } catch (...) {
        deadline_ms_ = -1;
        throw;
    }
}

Record RecordReader::read() {
    RecordHead h;
    get(&h, sizeof h, true);
    if (!known(h.kind)) throw Error(what_ + ": corrupted (unknown record kind " + std::to_string(h.kind) + ")");
    if (h.name_len > kMaxName || h.body_len > kMaxBody) throw Error(what_ + ": corrupted (a record is too large)");
    Record r{Kind(h.kind), std::string(h.name_len, '\0'), std::vector<uint8_t>(h.body_len)};
    get(r.name.data(), r.name.size());
    get(r.body.data(), r.body.size());
    uint32_t crc;
    get(&crc, sizeof crc);
    if (crc != crc_of(h, r.name.data(), r.body.data()))
        throw Error(what_ + ": corrupted (checksum of record " + (r.name.empty() ? "?" : r.name) + " does not match)");
    return r;
}

}  // namespace minivmm::state
