// The control class VIRTIO_NET_CTRL_NOTF_COAL (virtio 1.3, 5.1.6.5.7): the
// driver's coalescing parameters for all receive queues (RX_SET), all
// transmit queues (TX_SET) or one queue (VQ_SET, VQ_GET). The device keeps
// them per queue and hands every change to its datapath; a reset puts
// every queue back to 0 (no coalescing).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "virtio/coalesce.hpp"

namespace minivmm {

class NetCoalesce {
public:
    // Where a queue's new parameters go: the datapath that raises its interrupts.
    using Apply = std::function<void(unsigned queue, const Coalesce&)>;
    // queues: the data queues the device has (2 per pair).
    NetCoalesce(unsigned queues, Apply apply);

    // One command of the class, with the negotiated features and the data
    // queues that exist under them (the control queue comes after them).
    // False: VIRTIO_NET_ERR, nothing changed. VQ_GET's answer goes to reply.
    bool command(uint8_t cmd, const std::vector<uint8_t>& data, uint64_t features, unsigned queues,
                 std::vector<uint8_t>& reply);
    void reset();
    // A loaded state's parameters (net_state.cpp checked them), handed on as a command's are.
    void restore(unsigned queue, const Coalesce& c) {
        if (queue < q_.size()) set(queue, c);
    }
    unsigned queues() const { return static_cast<unsigned>(q_.size()); }
    Coalesce get(unsigned queue) const { return queue < q_.size() ? q_[queue] : Coalesce{}; }

private:
    void set(unsigned queue, const Coalesce& c);

    std::vector<Coalesce> q_;
    Apply apply_;
};

}  // namespace minivmm
