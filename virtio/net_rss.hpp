// Receive-side scaling (VIRTIO_NET_F_RSS, virtio 1.3, 5.1.6.5.7): the
// driver gives a Toeplitz key, the hash types to compute it over and an
// indirection table from hash to receive queue, with
// VIRTIO_NET_CTRL_MQ_RSS_CONFIG. Here: the feature's limits as the config
// space states them, and the command checked against them. The steering
// itself is the port's (vhost/ports/tap_steering.hpp).
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "virtio/net_features.hpp"

namespace minivmm::net {

// VIRTIO_NET_RSS_HASH_TYPE_*: IPv4, TCPv4, UDPv4, IPv6, TCPv6, UDPv6 are
// supported; IP_EX, TCP_EX, UDP_EX (IPv6 extension headers) are not.
constexpr uint32_t kHashIpv4 = 1u << 0, kHashTcpv4 = 1u << 1, kHashUdpv4 = 1u << 2, kHashIpv6 = 1u << 3,
                   kHashTcpv6 = 1u << 4, kHashUdpv6 = 1u << 5;
constexpr uint32_t kRssHashTypes = kHashIpv4 | kHashTcpv4 | kHashUdpv4 | kHashIpv6 | kHashTcpv6 | kHashUdpv6;
// rss_max_key_size and rss_max_indirection_table_length: the least the
// spec lets a device offer, and what Linux's driver uses.
constexpr unsigned kRssMaxKey = 40, kRssMaxTable = 128;
// Where they sit in struct virtio_net_config, after mtu, speed and duplex.
constexpr unsigned kRssConfigOffset = 17, kConfigSizeWithRss = 24;
constexpr uint8_t kCtrlMqRssConfig = 1;  // VIRTIO_NET_CTRL_MQ_RSS_CONFIG, class VIRTIO_NET_CTRL_MQ

struct RssConfig {
    uint32_t hash_types = 0;
    std::vector<uint16_t> table;  // receive queue (pair) per hash & (size - 1)
    uint16_t unclassified = 0;    // receive queue of frames not hashed
    uint16_t pairs = 0;           // max_tx_vq: the pairs in use, as VQ_PAIRS_SET sets them
    std::vector<uint8_t> key;
};

// struct virtio_net_rss_config: hash_types, indirection_table_mask,
// unclassified_queue, indirection_table[mask + 1], max_tx_vq,
// hash_key_length, hash_key_data, little-endian (bytes after the key, as
// Linux's driver pads its trailer, are ignored).
// nullopt unless: the table's length is a power of two up to kRssMaxTable,
// max_tx_vq is 1 to `max_pairs`, every queue named (table and
// unclassified) is below max_tx_vq, the key is at most kRssMaxKey bytes,
// and the hash types are among kRssHashTypes.
std::optional<RssConfig> parse_rss_config(std::span<const uint8_t> data, unsigned max_pairs);

// rss_max_key_size, rss_max_indirection_table_length and
// supported_hash_types, into a config space of kConfigSizeWithRss bytes.
void put_rss_config_space(uint8_t* cfg);

}  // namespace minivmm::net
