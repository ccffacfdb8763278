// Frames the datapath benchmark puts on the wire and reads back: Ethernet,
// IPv4 and TCP with correct checksums, and the virtio-net header in front.
// Written out here because linux/virtio_net.h is C, not C++.
#pragma once
#include <arpa/inet.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace bench {

// The virtio-net header (virtio 1.x, 5.1.6). A packet socket's lacks num_buffers.
struct NetHdr {
    uint8_t flags, gso_type;
    uint16_t hdr_len, gso_size, csum_start, csum_offset, num_buffers;
};
constexpr uint32_t kHdrLen = sizeof(NetHdr), kSocketHdrLen = kHdrLen - 2;
constexpr uint8_t kNeedsCsum = 1, kDataValid = 2, kGsoTcpv4 = 1;
constexpr size_t kEthIpTcp = 14 + 20 + 20;  // headers without TCP options
constexpr uint16_t kMss = 1448;             // TSO segment size: TCP over a 1500-byte MTU
constexpr uint8_t kSyn = 0x02, kAck = 0x10, kPsh = 0x08;

struct Endpoint {
    uint8_t mac[6];
    uint32_t ip;  // host byte order
    uint16_t port;
};

inline uint32_t sum16(const uint8_t* p, size_t n, uint32_t s = 0) {
    for (size_t i = 0; i + 1 < n; i += 2) s += (p[i] << 8) | p[i + 1];
    if (n & 1) s += p[n - 1] << 8;
    return s;
}
inline uint16_t fold(uint32_t s) {
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return static_cast<uint16_t>(s);
}
inline void put16(uint8_t* p, uint16_t v) { p[0] = v >> 8, p[1] = v & 0xff; }
inline void put32(uint8_t* p, uint32_t v) { put16(p, v >> 16), put16(p + 2, v & 0xffff); }
inline uint16_t get16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint32_t get32(const uint8_t* p) { return (uint32_t(get16(p)) << 16) | get16(p + 2); }

// An Ethernet/IPv4/TCP frame carrying payload bytes of a fixed pattern.
// partial: the TCP checksum field holds only the pseudo-header sum, as a
// guest leaves it for the host to finish (NEEDS_CSUM, and always with TSO).
inline std::vector<uint8_t> tcp_frame(const Endpoint& src, const Endpoint& dst, uint32_t seq, uint32_t ack,
                                      uint8_t flags, size_t payload, const std::vector<uint8_t>& options = {},
                                      bool partial = false) {
    const size_t tcp_len = 20 + options.size(), ip_len = 20 + tcp_len + payload;
    std::vector<uint8_t> f(14 + ip_len);
    std::memcpy(&f[0], dst.mac, 6);
    std::memcpy(&f[6], src.mac, 6);
    put16(&f[12], 0x0800);
    uint8_t* ip = &f[14];
    ip[0] = 0x45;
    put16(ip + 2, static_cast<uint16_t>(ip_len));
    put16(ip + 6, 0x4000);  // don't fragment
    ip[8] = 64;
    ip[9] = 6;  // TCP
    put32(ip + 12, src.ip);
    put32(ip + 16, dst.ip);
    put16(ip + 10, static_cast<uint16_t>(~fold(sum16(ip, 20))));
    uint8_t* tcp = ip + 20;
    put16(tcp, src.port);
    put16(tcp + 2, dst.port);
    put32(tcp + 4, seq);
    put32(tcp + 8, ack);
    tcp[12] = static_cast<uint8_t>((tcp_len / 4) << 4);
    tcp[13] = flags;
    put16(tcp + 14, 0xffff);  // window (scaled, if the SYN said so)
    if (!options.empty()) std::memcpy(tcp + 20, options.data(), options.size());
    for (size_t i = 0; i < payload; i++) tcp[tcp_len + i] = static_cast<uint8_t>(i * 7);
    uint32_t pseudo = sum16(ip + 12, 8) + 6 + static_cast<uint32_t>(tcp_len + payload);
    put16(tcp + 16, partial ? fold(pseudo) : static_cast<uint16_t>(~fold(sum16(tcp, tcp_len + payload, pseudo))));
    return f;
}

// What the benchmark needs to know of a TCP frame.
struct TcpSeen {
    bool tcp = false;
    uint8_t flags = 0;
    uint32_t seq = 0, payload = 0;
    Endpoint src{}, dst{};
};

// Reads the headers at the start of a received frame (they are always in its first buffer).
inline TcpSeen parse_tcp(const uint8_t* f, size_t len) {
    TcpSeen t;
    if (len < kEthIpTcp || get16(f + 12) != 0x0800 || (f[14] >> 4) != 4 || f[14 + 9] != 6) return t;
    const uint8_t* ip = f + 14;
    size_t ihl = (ip[0] & 15) * 4u;
    if (len < 14 + ihl + 20) return t;
    const uint8_t* tcp = ip + ihl;
    size_t doff = (tcp[12] >> 4) * 4u, ip_len = get16(ip + 2);
    if (ip_len < ihl + doff) return t;
    t.tcp = true;
    t.flags = tcp[13];
    t.seq = get32(tcp + 4);
    t.payload = static_cast<uint32_t>(ip_len - ihl - doff);
    std::memcpy(t.src.mac, f + 6, 6);
    std::memcpy(t.dst.mac, f, 6);
    t.src.ip = get32(ip + 12);
    t.dst.ip = get32(ip + 16);
    t.src.port = get16(tcp);
    t.dst.port = get16(tcp + 2);
    return t;
}

}  // namespace bench
