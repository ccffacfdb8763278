// What every datapath does with its port: offloads follow the negotiated
// features, and a pair out of use has its port queue detached.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vhost/ports/port.hpp"
#include "vhost/vhost.hpp"
#include "virtio/net_backend.hpp"

namespace minivmm {

class PortBackend : public NetBackend {
public:
    explicit PortBackend(std::unique_ptr<NetPort> port);
    std::string describe() const override { return port_->describe(); }
    unsigned pairs() const override { return port_->queues(); }
    bool vnet_header() const override { return port_->vnet_header(); }
    bool uso() const override { return port_->vnet_header() && port_->uso(); }
    unsigned mtu() const override { return port_->mtu(); }
    bool rss() const override { return port_->steering() != nullptr; }
    void set_rss(const net::RssConfig* c) override;
    void set_port_attached(bool attached) override;

protected:
    void set_offloads(uint64_t features);
    void clear_offloads() { port_->set_offload(0); }
    // With pair k's lock held. The kernel hashes flows over attached
    // queues only; queue 0 is never detached.
    void attach_queue(unsigned k);
    void detach_queue(unsigned k);

    std::unique_ptr<NetPort> port_;

private:
    std::vector<uint8_t> attached_;  // per queue; not vector<bool>: pairs write theirs under their own locks
};

std::unique_ptr<NetBackend> make_off_backend(std::unique_ptr<NetPort> port, const std::string& label);
std::unique_ptr<NetBackend> make_vhost_rings_backend(std::unique_ptr<NetPort> port,
                                                     std::unique_ptr<VhostBackend> vhost, const std::string& label);

}  // namespace minivmm
