#include "vmm/state_records.hpp"

#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
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

bool known(uint32_t kind) { return kind >= uint32_t(Kind::Config) && kind <= uint32_t(Kind::Ack); }

}  // namespace

void RecordWriter::put(const void* p, size_t n) {
    auto b = static_cast<const uint8_t*>(p);
    while (n) {
        // A socket (a migration) takes send: a destination gone is EPIPE
        // here, not SIGPIPE ending minivmm with its guest. A file takes write.
        ssize_t w = socket_ ? ::send(fd_, b, n, MSG_NOSIGNAL) : ::write(fd_, b, n);
        if (w < 0 && errno == ENOTSOCK && socket_) {
            socket_ = false;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) throw Error(std::string("writing saved state: ") + (w < 0 ? std::strerror(errno) : "nothing written"));
        b += w;
        n -= size_t(w);
        written_ += uint64_t(w);
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

void RecordReader::get(void* p, size_t n) {
    auto b = static_cast<uint8_t*>(p);
    while (n) {
        ssize_t r = ::read(fd_, b, n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) throw Error(what_ + ": " + std::strerror(errno));
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

Record RecordReader::read() {
    RecordHead h;
    get(&h, sizeof h);
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
