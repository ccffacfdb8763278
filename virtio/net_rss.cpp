#include "virtio/net_rss.hpp"

#include "virtio/net.hpp"
#include "vmm/bytes.hpp"

namespace minivmm {

namespace net {

std::optional<RssConfig> parse_rss_config(std::span<const uint8_t> d, unsigned max_pairs) {
    // Header: hash_types (4), indirection_table_mask (2), unclassified_queue (2).
    if (d.size() < 8) return std::nullopt;
    RssConfig c;
    c.hash_types = static_cast<uint32_t>(le_load(&d[0], 4));
    uint32_t entries = static_cast<uint32_t>(le_load(&d[4], 2)) + 1;
    c.unclassified = static_cast<uint16_t>(le_load(&d[6], 2));
    if (entries > kRssMaxTable || (entries & (entries - 1))) return std::nullopt;
    if (c.hash_types & ~kRssHashTypes) return std::nullopt;
    // The table, then max_tx_vq (2) and hash_key_length (1).
    size_t at = 8;
    if (d.size() - at < 2 * size_t(entries) + 3) return std::nullopt;
    for (uint32_t i = 0; i < entries; i++, at += 2) c.table.push_back(static_cast<uint16_t>(le_load(&d[at], 2)));
    c.pairs = static_cast<uint16_t>(le_load(&d[at], 2));
    size_t key_len = d[at + 2];
    at += 3;
    // Bytes after the key are ignored: Linux's driver sends its trailer
    // struct whole, with the padding after the key (one byte for 40).
    if (key_len > kRssMaxKey || d.size() - at < key_len) return std::nullopt;
    c.key.assign(d.begin() + at, d.begin() + at + key_len);
    if (c.pairs < 1 || c.pairs > max_pairs || c.unclassified >= c.pairs) return std::nullopt;
    for (uint16_t q : c.table)
        if (q >= c.pairs) return std::nullopt;
    return c;
}

void put_rss_config_space(uint8_t* cfg) {
    cfg[kRssConfigOffset] = kRssMaxKey;
    le_store(cfg + 18, 2, kRssMaxTable);
    le_store(cfg + 20, 4, kRssHashTypes);
}

}  // namespace net

// Called with ctrl_lock_ held. Like VQ_PAIRS_SET, the command sets the
// pairs in use (max_tx_vq); the pairs a table names are attached before it
// steers to them, and a table steers away from pairs before they go.
uint8_t VirtioNet::ctrl_rss(const std::vector<uint8_t>& data) {
    auto c = net::parse_rss_config(data, pairs());
    if (!c || !pairs_ready(c->pairs)) return 1;  // VIRTIO_NET_ERR
    if (c->pairs > in_use_) set_pairs_in_use(c->pairs);
    backend_->set_rss(&*c);
    rss_command_ = data;  // for saved state (net_state.cpp)
    if (c->pairs < in_use_) set_pairs_in_use(c->pairs);
    return 0;
}

}  // namespace minivmm
