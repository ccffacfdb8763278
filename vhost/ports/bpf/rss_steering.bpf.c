/* The tap's receive steering program (TUNSETSTEERINGEBPF): for each frame
 * the host sends into the tap, the queue, and so the guest's receive
 * virtqueue, it goes to. With the guest's RSS settings (virtio 1.3,
 * 5.1.6.5.7) it computes the Toeplitz hash (by tables minivmm derives
 * from the guest's key, see rss_steering.h) of the fields the guest's hash
 * types select and returns the indirection table's entry for it; frames it
 * cannot hash go to the guest's unclassified queue. Before the guest sets
 * RSS, it returns the hash itself, which the tap takes modulo its attached
 * queues: flows spread as the tap would spread them.
 *
 * Built with clang's BPF target; minivmm embeds the object and loads it
 * with libbpf (vhost/ports/tap_steering.cpp). A socket filter program: the
 * tap runs it with the frame's MAC header set, so offsets are taken from
 * there (BPF_PROG_TEST_RUN sets it the same way). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/virtio_net.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "rss_steering.h"

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct rss_steering);
} rss_map SEC(".maps");

/* Toeplitz over the input, by the slot's per-position tables (unrolled:
 * constant positions, each lookup bounded by the byte's value). */
static __always_inline __u32 toeplitz(const struct rss_slot *s, const __u8 *in, int len)
{
    __u32 hash = 0;
#pragma unroll
    for (int i = 0; i < RSS_INPUT_MAX; i++)
        if (i < len)
            hash ^= s->toeplitz[i][in[i]];
    return hash;
}

static __always_inline int load(struct __sk_buff *skb, __u32 off, void *to, __u32 len)
{
    return bpf_skb_load_bytes_relative(skb, off, to, len, BPF_HDR_START_MAC);
}

/* The hash input for this frame as the hash types allow (source address,
 * destination address, then source and destination ports, all as on the
 * wire); its length, or 0 when the frame is not one the types cover. */
static __always_inline int hash_input(struct __sk_buff *skb, __u32 types, __u8 *in)
{
    __u16 ethertype;
    if (load(skb, 12, &ethertype, 2))
        return 0;
    if (ethertype == bpf_htons(ETH_P_IP)) {
        __u8 ip[20];
        if (load(skb, ETH_HLEN, ip, sizeof ip) || ip[0] >> 4 != 4 || (ip[0] & 15) < 5)
            return 0;
        __builtin_memcpy(in, ip + 12, 8);
        /* Fragments (MF set or an offset) hash on addresses only: the
         * later ones carry no ports, and all of a datagram's must meet. */
        int whole = !(ip[6] & 0x3f) && !ip[7];
        int l4 = (ip[9] == IPPROTO_TCP && (types & VIRTIO_NET_RSS_HASH_TYPE_TCPv4)) ||
                 (ip[9] == IPPROTO_UDP && (types & VIRTIO_NET_RSS_HASH_TYPE_UDPv4));
        if (whole && l4 && !load(skb, ETH_HLEN + (ip[0] & 15) * 4, in + 8, 4))
            return 12;
        return types & VIRTIO_NET_RSS_HASH_TYPE_IPv4 ? 8 : 0;
    }
    if (ethertype == bpf_htons(ETH_P_IPV6)) {
        __u8 ip6[40];
        if (load(skb, ETH_HLEN, ip6, sizeof ip6) || ip6[0] >> 4 != 6)
            return 0;
        __builtin_memcpy(in, ip6 + 8, 32);
        /* Ports only right after the fixed header: the _EX hash types,
         * which walk extension headers, are not offered. */
        int l4 = (ip6[6] == IPPROTO_TCP && (types & VIRTIO_NET_RSS_HASH_TYPE_TCPv6)) ||
                 (ip6[6] == IPPROTO_UDP && (types & VIRTIO_NET_RSS_HASH_TYPE_UDPv6));
        if (l4 && !load(skb, ETH_HLEN + 40, in + 32, 4))
            return 36;
        return types & VIRTIO_NET_RSS_HASH_TYPE_IPv6 ? 32 : 0;
    }
    return 0;
}

SEC("socket")
int rss_steer(struct __sk_buff *skb)
{
    __u32 zero = 0;
    struct rss_steering *m = bpf_map_lookup_elem(&rss_map, &zero);
    if (!m)
        return 0;
    const struct rss_slot *s = &m->slot[*(volatile __u32 *)&m->active & 1];
    int table = s->mode == RSS_MODE_TABLE;
    __u8 in[RSS_INPUT_MAX] = {};
    int len = hash_input(skb, s->hash_types, in);
    if (!len)
        return table ? s->unclassified : 0;
    __u32 hash = toeplitz(s, in, len);
    return table ? s->table[hash & s->table_mask & (RSS_TABLE_MAX - 1)] : hash;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
