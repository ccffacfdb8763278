// Saved state of the legacy devices, the PCI bus and the MSI-X table: each
// driven into a non-trivial state through its registers, saved, loaded
// into a fresh one, saved again (the same bytes), and behaving as before;
// and every field a guest could not have set refused with an error.
#include <gtest/gtest.h>

#include <vector>

#include "vmm/acpi.hpp"
#include "vmm/acpi_pm.hpp"
#include "vmm/msix.hpp"
#include "vmm/pci.hpp"
#include "vmm/serial.hpp"
#include "vmm/state_stream.hpp"

using namespace minivmm;

namespace {

template <class Save>
std::vector<uint8_t> saved(Save save) {
    state::Writer w;
    save(w);
    return w.take();
}

// Loading bytes must throw state::Error whose message has `what` in it.
template <class Load>
void expect_refused(const std::vector<uint8_t>& bytes, Load load, const std::string& what) {
    state::Reader r(bytes, "test");
    try {
        load(r);
        ADD_FAILURE() << "loaded, expected an error about " << what;
    } catch (const state::Error& e) {
        EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
}

// Every prefix of a good state is refused (truncated), never half-used.
template <class Load>
void expect_prefixes_refused(const std::vector<uint8_t>& bytes, Load load) {
    for (size_t n = 0; n < bytes.size(); n++) {
        std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<long>(n));
        state::Reader r(cut, "test");
        EXPECT_THROW(load(r), state::Error) << "prefix of " << n << " bytes";
    }
}

struct Uart {
    std::vector<bool> lines;
    Serial s{[this](bool l) { lines.push_back(l); }, -1};
    void out(unsigned reg, uint8_t v) { s.write(reg, &v, 1); }
    uint8_t in(unsigned reg) {
        uint8_t v;
        s.read(reg, &v, 1);
        return v;
    }
};

}  // namespace

TEST(SerialState, RoundTripsWithUnreadBytesAndInterrupt) {
    Uart a;
    a.out(3, 0x83);  // DLAB: divisor 115200
    a.out(0, 0x01);
    a.out(1, 0x00);
    a.out(3, 0x03);  // 8N1
    a.out(7, 0x5a);
    a.out(2, 0x01);  // FIFOs on
    a.out(4, 0x10 | 0x03);  // loopback: what the guest sends comes back
    for (uint8_t c : {'h', 'i', '!'}) a.out(0, c);
    a.out(1, 0x01);  // receive interrupts: the line goes up
    ASSERT_TRUE(a.lines.back());
    auto bytes = saved([&](state::Writer& w) { a.s.save(w); });

    Uart b;
    state::Reader r(bytes, "serial");
    b.s.load(r);
    r.expect_end();
    EXPECT_EQ(saved([&](state::Writer& w) { b.s.save(w); }), bytes);
    ASSERT_FALSE(b.lines.empty());
    EXPECT_TRUE(b.lines.back()) << "the pending receive interrupt is raised again";
    for (Uart* u : {&a, &b}) {
        EXPECT_EQ(u->in(7), 0x5a);
        EXPECT_EQ(u->in(2), 0x04 | 0xc0);  // receive data pending, FIFOs
        EXPECT_EQ(u->in(0), 'h');
        EXPECT_EQ(u->in(0), 'i');
        EXPECT_EQ(u->in(0), '!');
        EXPECT_EQ(u->in(5) & 1, 0) << "no more data";
        u->out(3, 0x83);
        EXPECT_EQ(u->in(0), 0x01) << "divisor latch";
    }
}

TEST(SerialState, HostileFieldsAreRefused) {
    Uart a;
    auto good = saved([&](state::Writer& w) { a.s.save(w); });
    auto load = [](state::Reader& r) { Uart u; u.s.load(r); };
    auto with = [&](size_t at, uint8_t v) { auto b = good; b[at] = v; return b; };
    expect_refused(with(0, 0x10), load, "serial IER");
    expect_refused(with(2, 0x20), load, "serial MCR");
    expect_refused(with(4, 0x02), load, "serial FCR");
    expect_refused(with(7, 2), load, "neither 0 nor 1");
    state::Writer big;
    for (int i = 0; i < 8; i++) big.u8(i == 7 ? 0 : 0);
    big.blob(std::vector<uint8_t>(4097, 'x'));
    expect_refused(big.take(), load, "at most 4096 fit");
    expect_prefixes_refused(good, load);
}

TEST(AcpiPmState, RoundTripsAndRefusesWhatTheGuestCannotSet) {
    Stop stop;
    AcpiPm a(stop);
    uint8_t en[2] = {0x21, 0x01};
    a.write(AcpiPorts::kPm1aEvt - AcpiPorts::kBase + 2, en, 2);
    uint8_t cnt[2] = {0x00, 0x04};  // SLP_TYP 1, not S5: nothing happens
    a.write(AcpiPorts::kPm1aCnt - AcpiPorts::kBase, cnt, 2);
    auto bytes = saved([&](state::Writer& w) { a.save(w); });
    AcpiPm b(stop);
    state::Reader r(bytes, "pm");
    b.load(r);
    EXPECT_EQ(saved([&](state::Writer& w) { b.save(w); }), bytes);
    uint8_t ra[AcpiPorts::kLen], rb[AcpiPorts::kLen];
    a.read(0, ra, 8);
    b.read(0, rb, 8);
    EXPECT_EQ(std::vector<uint8_t>(ra, ra + 8), std::vector<uint8_t>(rb, rb + 8));

    auto load = [&](state::Reader& rr) { AcpiPm p(stop); p.load(rr); };
    auto with = [&](size_t at, uint8_t v) { auto c = bytes; c[at] = v; return c; };
    expect_refused(with(0, 1), load, "ACPI PM1 status");
    expect_refused(with(4, 0), load, "SCI_EN");
    expect_refused(with(5, 0x24), load, "SLP_EN");
    expect_prefixes_refused(bytes, load);
}

namespace {
struct Table {
    std::vector<MsiMessage> sent;
    std::vector<uint16_t> observed;
    Msix m{4, [this](const MsiMessage& msg) { sent.push_back(msg); }};
    Table() { m.set_observer([this](uint16_t v) { observed.push_back(v); }); }
    void put(uint16_t v, unsigned word, uint32_t x) {
        uint8_t d[4];
        le_store(d, 4, x);
        m.table_write(16u * v + 4 * word, d, 4);
    }
};
}  // namespace

TEST(MsixState, PendingVectorsSurviveAndAreSentWhenUnmasked) {
    Table a;
    for (uint16_t v = 0; v < 4; v++) {
        a.put(v, 0, 0xfee0'0000u + 0x1000u * v);
        a.put(v, 2, 0x40 + v);
    }
    a.m.control_written(0x8000);  // enabled
    a.put(0, 3, 0);               // vector 0 unmasked; 1..3 stay masked
    a.put(2, 3, 0);
    EXPECT_TRUE(a.m.raise(0));
    EXPECT_FALSE(a.m.raise(1));  // pending
    EXPECT_TRUE(a.m.pending(1));
    auto bytes = saved([&](state::Writer& w) { a.m.save(w); });

    Table b;
    state::Reader r(bytes, "msix");
    b.m.load(r, "dev");
    r.expect_end();
    EXPECT_EQ(saved([&](state::Writer& w) { b.m.save(w); }), bytes);
    EXPECT_TRUE(b.sent.empty()) << "loading delivers nothing";
    EXPECT_EQ(b.observed, (std::vector<uint16_t>{0, 1, 2, 3})) << "routes are told of every vector";
    EXPECT_TRUE(b.m.enabled());
    MsiMessage msg{};
    EXPECT_TRUE(b.m.live(2, msg));
    EXPECT_EQ(msg.address, 0xfee0'2000u);
    EXPECT_EQ(msg.data, 0x42u);
    b.put(1, 3, 0);  // unmasking sends the pending message
    ASSERT_EQ(b.sent.size(), 1u);
    EXPECT_EQ(b.sent[0].address, 0xfee0'1000u);
    EXPECT_EQ(b.sent[0].data, 0x41u);
}

TEST(MsixState, HostileFieldsAreRefused) {
    Table a;
    a.m.control_written(0x8000);
    a.put(1, 3, 0);
    auto good = saved([&](state::Writer& w) { a.m.save(w); });
    auto load = [](state::Reader& r) { Table t; t.m.load(r, "net9"); };
    // Layout: u16 size, enable, mask, then per vector 4 words and a pending flag.
    auto entry = [](uint16_t v) { return size_t(4) + 17u * v; };
    auto with = [&](size_t at, uint8_t x) { auto b = good; b[at] = x; return b; };
    expect_refused(with(0, 5), load, "net9 MSI-X: table of 5 vectors");
    expect_refused(with(entry(2), 0x01), load, "net9 MSI-X vector 2: message address not dword aligned");
    expect_refused(with(entry(3) + 12, 0x03), load, "net9 MSI-X vector 3: vector control");
    expect_refused(with(entry(1) + 16, 1), load, "net9 MSI-X vector 1: pending but not masked");
    expect_refused(with(2, 7), load, "neither 0 nor 1");
    expect_prefixes_refused(good, load);
}

TEST(PciBusState, AddressRegisterAndHostBridgeRoundTrip) {
    PciBus a;
    uint8_t d[4];
    le_store(d, 4, 0x8000'0004u);  // host bridge, command register
    a.write(0, d, 4);
    le_store(d, 2, 0x0006);
    a.write(4, d, 2);
    le_store(d, 4, 0x8000'003cu);
    a.write(0, d, 4);
    d[0] = 11;
    a.write(4, d, 1);
    auto bytes = saved([&](state::Writer& w) { a.save(w); });
    PciBus b;
    state::Reader r(bytes, "pci");
    b.load(r);
    EXPECT_EQ(saved([&](state::Writer& w) { b.save(w); }), bytes);
    for (PciBus* bus : {&a, &b}) {
        uint8_t v[4] = {};
        bus->read(4, v, 1);
        EXPECT_EQ(v[0], 11) << "the address register still selects the interrupt line";
    }
    auto load = [](state::Reader& rr) { PciBus p; p.load(rr); };
    auto with = [&](size_t at, uint8_t x) { auto c = bytes; c[at] = x; return c; };
    expect_refused(with(4 + 0, 0x86), load, "PCI host bridge config 0x0: read-only");
    expect_refused(with(4 + 4, 0x07), load, "command/status bits");
    expect_refused(with(4 + 0x10, 0x10), load, "BAR value 0x10");
    expect_prefixes_refused(bytes, load);
}
