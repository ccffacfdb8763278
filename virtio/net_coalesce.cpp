#include "virtio/net_coalesce.hpp"

#include "virtio/net_features.hpp"
#include "vmm/bytes.hpp"

namespace minivmm {

namespace {
// The data of each command, as the driver lays it out (all little-endian).
constexpr size_t kSetLen = 8;     // TX_SET, RX_SET: le32 max_packets, le32 usecs
constexpr size_t kVqSetLen = 12;  // VQ_SET: le16 vqn, le16 reserved, then as above
// VQ_GET: le16 vqn (Linux sends just that); the whole struct of VQ_SET is
// taken too, its parameters ignored.
constexpr size_t kVqGetLen = 2;

bool read_params(const uint8_t* p, Coalesce& out) {
    out = {static_cast<uint32_t>(le_load(p, 4)), static_cast<uint32_t>(le_load(p + 4, 4))};
    return out.max_packets <= kMaxCoalescePackets && out.max_usecs <= kMaxCoalesceUsecs;
}
}  // namespace

NetCoalesce::NetCoalesce(unsigned queues, Apply apply) : q_(queues), apply_(std::move(apply)) {}

void NetCoalesce::set(unsigned queue, const Coalesce& c) {
    q_[queue] = c;
    if (apply_) apply_(queue, c);
}

void NetCoalesce::reset() {
    for (unsigned i = 0; i < q_.size(); i++) set(i, {});
}

bool NetCoalesce::command(uint8_t cmd, const std::vector<uint8_t>& data, uint64_t features, unsigned queues,
                          std::vector<uint8_t>& reply) {
    if (queues > q_.size()) queues = static_cast<unsigned>(q_.size());
    Coalesce c;
    // Each feature allows its own commands only: NOTF_COAL the SETs for
    // all queues, VQ_NOTF_COAL the per-queue ones (5.1.6.5.9).
    if (cmd == VIRTIO_NET_CTRL_NOTF_COAL_TX_SET || cmd == VIRTIO_NET_CTRL_NOTF_COAL_RX_SET) {
        if (!(features & net::kNotfCoal)) return false;
        if (data.size() != kSetLen || !read_params(data.data(), c)) return false;
        // Every queue of that direction the device has, in use or not yet.
        unsigned first = cmd == VIRTIO_NET_CTRL_NOTF_COAL_TX_SET ? 1 : 0;
        for (unsigned i = first; i < queues; i += 2) set(i, c);
        return true;
    }
    if (!(features & net::kVqNotfCoal)) return false;
    // A data queue: the control queue (index `queues`) has no notifications to coalesce.
    if (data.size() < 2) return false;
    uint64_t vqn = le_load(data.data(), 2);
    if (vqn >= queues) return false;
    if (cmd == VIRTIO_NET_CTRL_NOTF_COAL_VQ_SET) {
        if (data.size() != kVqSetLen || !read_params(data.data() + 4, c)) return false;
        set(static_cast<unsigned>(vqn), c);
        return true;
    }
    if (cmd == VIRTIO_NET_CTRL_NOTF_COAL_VQ_GET) {
        if (data.size() != kVqGetLen && data.size() != kVqSetLen) return false;
        c = q_[vqn];
        reply.assign(8, 0);
        le_store(reply.data(), 4, c.max_packets);
        le_store(reply.data() + 4, 4, c.max_usecs);
        return true;
    }
    return false;
}

}  // namespace minivmm
