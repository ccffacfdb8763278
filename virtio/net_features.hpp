// virtio-net's feature bits and sizes, which the device, its datapaths and
// its backends all speak.
#pragma once
#include <cstddef>
#include <cstdint>

#include "vmm/uapi_compat.hpp"

namespace minivmm::net {

// Feature bits (5.1.3).
constexpr uint64_t kCsum = 1ull << 0, kGuestCsum = 1ull << 1, kMac = 1ull << 5, kGuestTso4 = 1ull << 7,
                   kGuestTso6 = 1ull << 8, kGuestEcn = 1ull << 9, kHostTso4 = 1ull << 11, kHostTso6 = 1ull << 12,
                   kHostEcn = 1ull << 13, kMrgRxbuf = 1ull << 15, kStatus = 1ull << 16, kCtrlVq = 1ull << 17,
                   kCtrlRx = 1ull << 18, kGuestAnnounce = 1ull << 21, kMq = 1ull << 22, kCtrlMacAddr = 1ull << 23,
                   kMtu = 1ull << 3, kGuestUso4 = 1ull << VIRTIO_NET_F_GUEST_USO4,
                   kGuestUso6 = 1ull << VIRTIO_NET_F_GUEST_USO6, kHostUso = 1ull << VIRTIO_NET_F_HOST_USO,
                   kNotfCoal = 1ull << VIRTIO_NET_F_NOTF_COAL, kVqNotfCoal = 1ull << VIRTIO_NET_F_VQ_NOTF_COAL,
                   kRss = 1ull << 60;  // VIRTIO_NET_F_RSS
// The config space's status field (5.1.4): the link is up; the driver is
// to announce the guest (GUEST_ANNOUNCE) and acknowledge it.
constexpr uint16_t kStatusLinkUp = 1, kStatusAnnounce = 2;
// The MTU a NIC may be given (--net mtu=, VIRTIO_NET_F_MTU): IPv4's
// minimum up to what the config space's 16-bit field holds.
constexpr unsigned kMinMtu = 68, kMaxMtu = 65535;
constexpr uint32_t kHeaderLen = 12;  // struct virtio_net_hdr_v1, num_buffers included
constexpr uint16_t kRxQueue = 0, kTxQueue = 1;
// The largest frame a tap hands over: a 64 KiB GSO super-frame plus link
// header, after the virtio-net header.
constexpr size_t kMaxFrame = kHeaderLen + 65536 + 256;
// Queue pairs a NIC may have: minivmm's limit, checked when a NIC is built.
constexpr unsigned kMaxPairs = 16;
// The pairs a driver may use: every one (max_virtqueue_pairs) once it
// negotiates MQ or RSS, else the first; the control queue follows them (5.1.2).
constexpr unsigned usable_pairs(uint64_t features, unsigned pairs) { return features & (kMq | kRss) ? pairs : 1; }
constexpr uint16_t ctrl_queue(uint64_t features, unsigned pairs) {
    return static_cast<uint16_t>(2 * usable_pairs(features, pairs));
}

}  // namespace minivmm::net
