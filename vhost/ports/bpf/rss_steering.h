/* The map shared by the tap's steering program (rss_steering.bpf.c) and
 * minivmm (vhost/ports/tap_steering.cpp): C, so both compilers read the
 * same layout. minivmm writes it through an mmap of the map (BPF_F_MMAPABLE),
 * never with bpf(): the thread that serves the guest's control queue needs
 * no system call for it.
 *
 * Two slots: minivmm fills the one not in use, then flips `active`. A
 * program run reads `active` once and then only that slot, so it sees one
 * whole configuration unless two updates land while it runs (one packet's
 * worth of time); even then every value it can read is one minivmm checked,
 * and the table index is masked to the table's size here, so the worst is
 * one packet on another valid queue. */
#ifndef MINIVMM_RSS_STEERING_H
#define MINIVMM_RSS_STEERING_H

#include <linux/types.h>

/* What the device offers the guest (config space rss_max_key_size and
 * rss_max_indirection_table_length): the virtio spec's minimums. */
#define RSS_KEY_MAX 40
#define RSS_TABLE_MAX 128
/* The longest hash input: IPv6 source and destination addresses and ports. */
#define RSS_INPUT_MAX 36

/* mode */
#define RSS_MODE_SPREAD 0 /* no guest table: return the hash, the tap takes it modulo its queues */
#define RSS_MODE_TABLE 1  /* the guest's table: return table[hash & table_mask] */

struct rss_slot {
    __u32 mode;
    __u32 hash_types; /* VIRTIO_NET_RSS_HASH_TYPE_* the guest enabled */
    __u16 table_mask; /* table length - 1 */
    __u16 unclassified;
    __u32 reserved;
    __u16 table[RSS_TABLE_MAX];
    /* The guest's key as the program uses it: toeplitz[i][v] is what byte
     * value v at input position i adds (XOR) to the hash. minivmm computes
     * it whenever the key changes; per frame the program then does one
     * lookup per input byte instead of 8 shifts and XORs per bit. */
    __u32 toeplitz[RSS_INPUT_MAX][256];
};

struct rss_steering {
    __u32 active; /* 0 or 1: the slot programs read */
    __u32 reserved;
    struct rss_slot slot[2];
};

#endif
