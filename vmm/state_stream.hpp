// Saved machine state, as bytes: the common form of a snapshot file and a
// migration stream. Devices write their state into a Writer and read it back
// from a Reader; the Reader never trusts what it is given (a snapshot file
// may be truncated or edited, a stream may come from anyone who can reach
// the socket), so every read is bounded and a short one throws.
//
// On the wire, state travels as records: a kind, a name, a body and a CRC32
// of all three, after a header with a magic and a version. A record is
// checked whole before anything in it is used, so a corrupted file is
// refused, never half-loaded.
#pragma once
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "vmm/error.hpp"

namespace minivmm::state {

// The stream's own failures: truncated, corrupted, or from another version
// or configuration. What is wrong is in the message, for one line on stderr.
struct Error : UserError {
    using UserError::UserError;
};

class Writer {
public:
    void bytes(const void* p, size_t n) {
        auto b = static_cast<const uint8_t*>(p);
        out_.insert(out_.end(), b, b + n);
    }
    // Plain structs of the kernel's ABI (kvm_regs, kvm_lapic_state...), and
    // integers, in the host's byte order: both ends are x86-64 Linux.
    template <class T>
    void pod(const T& v) {
        static_assert(std::is_trivially_copyable_v<T>);
        bytes(&v, sizeof v);
    }
    void u8(uint8_t v) { pod(v); }
    void u16(uint16_t v) { pod(v); }
    void u32(uint32_t v) { pod(v); }
    void u64(uint64_t v) { pod(v); }
    void boolean(bool v) { u8(v ? 1 : 0); }
    // Variable-length data: its length first.
    void blob(std::span<const uint8_t> b) {
        u32(static_cast<uint32_t>(b.size()));
        bytes(b.data(), b.size());
    }
    void str(const std::string& s) { blob({reinterpret_cast<const uint8_t*>(s.data()), s.size()}); }
    const std::vector<uint8_t>& data() const { return out_; }
    std::vector<uint8_t> take() { return std::move(out_); }

private:
    std::vector<uint8_t> out_;
};

class Reader {
public:
    // what: names the section in errors ("net0: truncated state").
    Reader(std::span<const uint8_t> in, std::string what) : in_(in), what_(std::move(what)) {}
    void bytes(void* p, size_t n) {
        if (n > in_.size() - pos_) throw Error(what_ + ": truncated state");
        if (n == 0) return;  // an empty blob's buffer may be null, which memcpy may not be given
        std::memcpy(p, in_.data() + pos_, n);
        pos_ += n;
    }
    template <class T>
    T pod() {
        static_assert(std::is_trivially_copyable_v<T>);
        T v;
        bytes(&v, sizeof v);
        return v;
    }
    uint8_t u8() { return pod<uint8_t>(); }
    uint16_t u16() { return pod<uint16_t>(); }
    uint32_t u32() { return pod<uint32_t>(); }
    uint64_t u64() { return pod<uint64_t>(); }
    bool boolean() {
        uint8_t v = u8();
        if (v > 1) fail("a flag is neither 0 nor 1");
        return v;
    }
    // A length-prefixed blob of at most max bytes.
    std::vector<uint8_t> blob(size_t max) {
        uint32_t n = u32();
        if (n > max) fail("a field is " + std::to_string(n) + " bytes, at most " + std::to_string(max) + " fit");
        std::vector<uint8_t> v(n);
        bytes(v.data(), n);
        return v;
    }
    std::string str(size_t max) {
        auto b = blob(max);
        return {b.begin(), b.end()};
    }
    // Every section is read to its end: bytes left over mean the writer and
    // the reader disagree on the layout.
    void expect_end() const {
        if (pos_ != in_.size()) throw Error(what_ + ": " + std::to_string(in_.size() - pos_) + " bytes of state left over");
    }
    [[noreturn]] void fail(const std::string& why) const { throw Error(what_ + ": " + why); }
    const std::string& what() const { return what_; }

private:
    std::span<const uint8_t> in_;
    size_t pos_ = 0;
    std::string what_;
};

}  // namespace minivmm::state
