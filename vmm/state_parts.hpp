// A section of saved state as numbered parts, so its layout can grow: a u32
// layout version, a u32 part count, then each part as a u16 tag and a
// length-prefixed body. A new field is a new tag; a reader refuses tags it
// does not know (state it would drop), a tag twice, and a missing part the
// section cannot do without. A changed part keeps its tag only with a new
// layout version.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <vector>

#include "vmm/state_stream.hpp"

namespace minivmm::state {

class PartsWriter {
public:
    void add(uint16_t tag, const Writer& body) { parts_.emplace_back(tag, body.data()); }
    template <class T>
    void add_pod(uint16_t tag, const T& v) {
        Writer w;
        w.pod(v);
        add(tag, w);
    }
    void write(Writer& out, uint32_t layout) const {
        out.u32(layout);
        out.u32(static_cast<uint32_t>(parts_.size()));
        for (const auto& [tag, body] : parts_) {
            out.u16(tag);
            out.blob(body);
        }
    }

private:
    std::vector<std::pair<uint16_t, std::vector<uint8_t>>> parts_;
};

class Parts {
public:
    // Reads the whole section: its layout must be `layout`, every tag one of
    // `known`, each body at most max_part bytes.
    Parts(Reader& in, uint32_t layout, std::initializer_list<uint16_t> known, size_t max_part) : what_(in.what()) {
        uint32_t v = in.u32();
        if (v != layout)
            in.fail("layout " + std::to_string(v) + ", this minivmm reads layout " + std::to_string(layout));
        uint32_t n = in.u32();
        if (n > known.size()) in.fail(std::to_string(n) + " parts, at most " + std::to_string(known.size()) + " exist");
        for (uint32_t i = 0; i < n; i++) {
            uint16_t tag = in.u16();
            bool ok = false;
            for (uint16_t k : known) ok |= k == tag;
            if (!ok) in.fail("unknown part " + std::to_string(tag));
            if (parts_.count(tag)) in.fail("part " + std::to_string(tag) + " twice");
            parts_[tag] = in.blob(max_part);
        }
        in.expect_end();
    }
    bool has(uint16_t tag) const { return parts_.count(tag) != 0; }
    size_t size(uint16_t tag) const { return has(tag) ? parts_.at(tag).size() : 0; }
    // A part's body to read from; the section's name and the part's say where.
    Reader reader(uint16_t tag, const char* name) const {
        auto it = parts_.find(tag);
        if (it == parts_.end()) throw Error(what_ + ": no " + name + " in the saved state");
        return Reader(it->second, what_ + " " + name);
    }
    // A part that is one kernel struct, exactly its size.
    template <class T>
    T pod(uint16_t tag, const char* name) const {
        Reader r = reader(tag, name);
        T v = r.pod<T>();
        r.expect_end();
        return v;
    }

private:
    std::string what_;
    std::map<uint16_t, std::vector<uint8_t>> parts_;
};

}  // namespace minivmm::state
