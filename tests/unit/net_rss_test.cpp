// VIRTIO_NET_CTRL_MQ_RSS_CONFIG: the command's layout and limits checked
// (hostile inputs included), and the device that offers RSS only with a
// port that steers, states its limits in config space, answers the command
// and hands the settings to the tap's steering program.
#include <bpf/bpf.h>

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "tests/unit/net_rig.hpp"
#include "tests/unit/netns_helpers.hpp"
#include "vhost/ports/tap_steering.hpp"
#include "virtio/net_rss.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {
using Bytes = std::vector<uint8_t>;

void le(Bytes& b, uint64_t v, int n) {
    for (int i = 0; i < n; i++) b.push_back(uint8_t(v >> (8 * i)));
}

// struct virtio_net_rss_config as a driver lays it out.
Bytes rss_command(uint32_t types, const std::vector<uint16_t>& table, uint16_t unclassified, uint16_t max_tx_vq,
                  const Bytes& key, int mask_delta = 0) {
    Bytes b;
    le(b, types, 4);
    le(b, uint16_t(table.size() - 1 + mask_delta), 2);
    le(b, unclassified, 2);
    for (uint16_t q : table) le(b, q, 2);
    le(b, max_tx_vq, 2);
    b.push_back(uint8_t(key.size()));
    b.insert(b.end(), key.begin(), key.end());
    return b;
}

const Bytes kKey(40, 0x5a);
std::vector<uint16_t> spread(unsigned n, unsigned pairs) {
    std::vector<uint16_t> t(n);
    for (unsigned i = 0; i < n; i++) t[i] = uint16_t(i % pairs);
    return t;
}
}  // namespace

TEST(NetRssParse, AcceptsWhatLinuxSends) {
    auto c = net::parse_rss_config(rss_command(net::kRssHashTypes, spread(128, 4), 0, 4, kKey), 4);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->hash_types, net::kRssHashTypes);
    EXPECT_EQ(c->table, spread(128, 4));
    EXPECT_EQ(c->pairs, 4);
    EXPECT_EQ(c->key, kKey);
    // Linux 6.12's driver sends its trailer struct whole: a byte of padding
    // after the 40-byte key. Ignored.
    Bytes padded = rss_command(net::kRssHashTypes, spread(128, 1), 0, 1, kKey);
    padded.push_back(0);
    c = net::parse_rss_config(padded, 2);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->key, kKey);
    // One entry, no key, no hash type: legal, if pointless.
    c = net::parse_rss_config(rss_command(0, {1}, 1, 2, {}), 2);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->table, std::vector<uint16_t>{1});
    EXPECT_EQ(c->unclassified, 1);
}

TEST(NetRssParse, RefusesWhatBreaksTheLimits) {
    auto bad = [](const Bytes& b, unsigned max_pairs = 4) { return !net::parse_rss_config(b, max_pairs); };
    EXPECT_TRUE(bad(rss_command(net::kRssHashTypes, spread(256, 4), 0, 4, kKey))) << "table over 128";
    EXPECT_TRUE(bad(rss_command(net::kRssHashTypes, spread(96, 4), 0, 4, kKey))) << "table not a power of two";
    EXPECT_TRUE(bad(rss_command(net::kRssHashTypes, spread(128, 4), 0, 4, Bytes(41, 1)))) << "key over 40";
    EXPECT_TRUE(bad(rss_command(1u << 6, spread(128, 4), 0, 4, kKey))) << "IP_EX not supported";
    EXPECT_TRUE(bad(rss_command(1u << 9, spread(128, 4), 0, 4, kKey))) << "an undefined hash type";
    EXPECT_TRUE(bad(rss_command(net::kRssHashTypes, spread(128, 4), 0, 2, kKey))) << "table names pair 2, 3 of 2";
    EXPECT_TRUE(bad(rss_command(net::kRssHashTypes, spread(128, 2), 2, 2, kKey))) << "unclassified out of range";
    EXPECT_TRUE(bad(rss_command(net::kRssHashTypes, spread(128, 1), 0, 0, kKey))) << "max_tx_vq 0";
    EXPECT_TRUE(bad(rss_command(net::kRssHashTypes, spread(128, 4), 0, 5, kKey))) << "more pairs than the device";
    Bytes b = rss_command(net::kRssHashTypes, spread(128, 4), 0, 4, kKey);
    b.resize(b.size() - 1);
    EXPECT_TRUE(bad(b)) << "the key cut short";
    // A mask claiming more entries than were sent: no read past the data.
    EXPECT_TRUE(bad(rss_command(net::kRssHashTypes, spread(4, 4), 0, 4, kKey, 4)));
    EXPECT_TRUE(bad(rss_command(net::kRssHashTypes, spread(4, 4), 0, 4, kKey, 0xfffc))) << "mask 0xffff";
    for (size_t n = 0; n < 8 + 2 * 4 + 3; n++) {
        Bytes cut = rss_command(net::kRssHashTypes, spread(4, 4), 0, 4, {});
        cut.resize(n);
        EXPECT_TRUE(bad(cut)) << "cut to " << n << " bytes";
    }
}

// Random bytes and random mutations of a good command: never a crash or a
// read past the data (ASan in the fuzzer), and whatever passes is within
// every limit.
TEST(NetRssParse, RandomInputsPassOnlyWithinLimits) {
    std::mt19937 rng(99);
    Bytes good = rss_command(net::kRssHashTypes, spread(8, 3), 1, 3, Bytes(16, 7));
    for (int i = 0; i < 20000; i++) {
        Bytes b = good;
        if (i % 2) {
            b.resize(rng() % 64);
            for (auto& x : b) x = uint8_t(rng());
        } else {
            for (int m = rng() % 4; m >= 0; m--) b[rng() % b.size()] = uint8_t(rng());
        }
        auto c = net::parse_rss_config(b, 3);
        if (!c) continue;
        EXPECT_LE(c->table.size(), net::kRssMaxTable);
        EXPECT_EQ(c->table.size() & (c->table.size() - 1), 0u);
        EXPECT_LE(c->key.size(), net::kRssMaxKey);
        EXPECT_EQ(c->hash_types & ~net::kRssHashTypes, 0u);
        EXPECT_TRUE(c->pairs >= 1 && c->pairs <= 3);
        EXPECT_LT(c->unclassified, c->pairs);
        for (uint16_t q : c->table) EXPECT_LT(q, c->pairs);
    }
}

namespace {
constexpr uint64_t kRssFeatures = kMqFeatures | net::kRss;

// The program's answer for an IPv4 UDP frame: which queue the tap would use.
uint32_t steer_udp(CtrlRig& r, uint16_t sport) {
    Bytes f = {0x52, 0x54, 0, 1, 2, 3, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0,
               10, 0, 0, 1, 10, 0, 0, 2};
    f.push_back(uint8_t(sport >> 8)), f.push_back(uint8_t(sport)), f.push_back(0x1e), f.push_back(0x61);
    f.resize(f.size() + 4);
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = f.data(), .data_size_in = uint32_t(f.size()));
    int fd = static_cast<TapSteering*>(r.tap->steering())->program_fd();
    EXPECT_EQ(bpf_prog_test_run_opts(fd, &opts), 0);
    return opts.retval;
}

uint64_t ctrl_errors(CtrlRig& r) {
    auto stats = r.net->stats();
    for (const auto& q : stats->queues)
        if (q.name == "ctrl") return q.errors;
    return ~0ull;
}
}  // namespace

TEST(NetRss, OfferedWithASteeringTapAndItsLimitsInConfigSpace) {
    in_netns([] {
        CtrlRig r(2, kRssFeatures, "rs0", kQSize, {}, true);
        ASSERT_EQ(r.steering_note, "");
        EXPECT_TRUE(r.net->features() & net::kRss);
        uint8_t cfg[24];
        r.net->config_read(0, cfg, sizeof cfg);
        EXPECT_EQ(cfg[17], 40) << "rss_max_key_size";
        EXPECT_EQ(cfg[18] | cfg[19] << 8, 128) << "rss_max_indirection_table_length";
        EXPECT_EQ(cfg[20] | cfg[21] << 8 | cfg[22] << 16 | uint32_t(cfg[23]) << 24, net::kRssHashTypes);
    });
    in_netns([] {
        CtrlRig r(2, kMqFeatures);  // no steering program: no RSS
        EXPECT_FALSE(r.net->features() & net::kRss);
        uint8_t cfg[24];
        r.net->config_read(0, cfg, sizeof cfg);
        EXPECT_EQ(cfg[17] | cfg[18] | cfg[19] | cfg[20], 0);
        // Nor is the command taken.
        EXPECT_EQ(r.command(4, 1, rss_command(net::kRssHashTypes, spread(128, 2), 0, 2, kKey)), kErr);
    });
}

TEST(NetRss, TheCommandSteersThroughTheTapAndBadOnesAreRefusedAndCounted) {
    in_netns([] {
        CtrlRig r(2, kRssFeatures, "rs1", kQSize, {}, true);
        ASSERT_EQ(r.steering_note, "");
        // Every flow to pair 1 (as ethtool -X eth0 weight 0 1).
        ASSERT_EQ(r.command(4, 1, rss_command(net::kRssHashTypes, std::vector<uint16_t>(128, 1), 0, 2, kKey)), kOk);
        for (uint16_t port = 1000; port < 1016; port++) EXPECT_EQ(steer_udp(r, port), 1u);
        ASSERT_EQ(r.command(4, 1, rss_command(net::kRssHashTypes, std::vector<uint16_t>(128, 0), 1, 2, kKey)), kOk);
        for (uint16_t port = 1000; port < 1016; port++) EXPECT_EQ(steer_udp(r, port), 0u);
        // Spread over both (ethtool -X eth0 equal 2).
        ASSERT_EQ(r.command(4, 1, rss_command(net::kRssHashTypes, spread(128, 2), 0, 2, kKey)), kOk);
        unsigned on[2] = {};
        for (uint16_t port = 1000; port < 1032; port++) on[steer_udp(r, port) & 1]++;
        EXPECT_GT(on[0], 0u);
        EXPECT_GT(on[1], 0u);
        // Refused, counted, and the settings stay.
        uint64_t errors = ctrl_errors(r);
        EXPECT_EQ(r.command(4, 1, rss_command(net::kRssHashTypes, std::vector<uint16_t>(128, 1), 2, 2, kKey)), kErr);
        EXPECT_EQ(r.command(4, 1, rss_command(net::kRssHashTypes, std::vector<uint16_t>(128, 3), 0, 4, kKey)), kErr);
        EXPECT_EQ(r.command(4, 1, rss_command(1u << 7, std::vector<uint16_t>(128, 1), 0, 2, kKey)), kErr);
        EXPECT_EQ(r.command(4, 1, {1, 2, 3}), kErr);
        EXPECT_EQ(ctrl_errors(r), errors + 4);
        unsigned again[2] = {};
        for (uint16_t port = 1000; port < 1032; port++) again[steer_udp(r, port) & 1]++;
        EXPECT_EQ(again[0], on[0]);
        EXPECT_EQ(r.t.broken_why(), "");
        // A reset drops the guest's table: the program spreads by hash again
        // (its answer is then the hash, beyond any queue number).
        r.net->reset();
        bool hashes = false;
        for (uint16_t port = 1000; port < 1016; port++) hashes |= steer_udp(r, port) > 1;
        EXPECT_TRUE(hashes);
    });
}

// A driver may negotiate RSS without MQ (Linux 6.12's does not, others
// may): then too every pair is usable, and the control queue follows them
// all (5.1.2: N = max_virtqueue_pairs with MQ or RSS).
TEST(NetRss, WithoutMqEveryPairIsUsableAndTheControlQueueFollowsThem) {
    in_netns([] {
        CtrlRig r(2, kRssFeatures & ~net::kMq, "rs3", kQSize, {}, true);
        ASSERT_EQ(r.steering_note, "");
        ASSERT_TRUE(r.net->features() & net::kRss);
        ASSERT_EQ(r.ctrl_index, 4);
        EXPECT_EQ(r.command(0, 0, {1}), kOk) << "RX promisc, on the control queue at 2N";
        ASSERT_EQ(r.command(4, 1, rss_command(net::kRssHashTypes, std::vector<uint16_t>(128, 1), 0, 2, kKey)), kOk);
        for (uint16_t port = 1000; port < 1016; port++) EXPECT_EQ(steer_udp(r, port), 1u);
        EXPECT_EQ(r.pairs_set(2), kErr) << "VQ_PAIRS_SET needs MQ";
        EXPECT_EQ(r.t.broken_why(), "");
    });
}

// One pair: nothing to steer. Not offered even by a port that could
// (minivmm loads no program then; this tap has one to show the rule).
TEST(NetRss, NotOfferedWithOnePair) {
    in_netns([] {
        CtrlRig r(1, kRssFeatures & ~net::kMq, "rs2", kQSize, {}, true);
        ASSERT_EQ(r.steering_note, "");
        EXPECT_FALSE(r.net->features() & net::kRss);
    });
}
