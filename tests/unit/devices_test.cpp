#include <gtest/gtest.h>

#include <unistd.h>

#include <vector>

#include "vmm/acpi.hpp"
#include "vmm/acpi_pm.hpp"
#include "vmm/io_bus.hpp"
#include "vmm/serial.hpp"

using namespace minivmm;

namespace {
struct Recorder : IoDevice {
    std::vector<uint64_t> reads, writes;
    void read(uint64_t off, uint8_t* d, uint32_t n) override {
        reads.push_back(off);
        le_store(d, n, 0x1234);
    }
    void write(uint64_t off, const uint8_t*, uint32_t) override { writes.push_back(off); }
};

// A UART wired to a pipe, with the IRQ line recorded.
struct Uart {
    Uart() {
        EXPECT_EQ(pipe(fds), 0);
        s = std::make_unique<Serial>([this](bool l) { levels.push_back(l); }, fds[1]);
    }
    ~Uart() {
        close(fds[0]);
        close(fds[1]);
    }
    uint8_t in(unsigned reg) {
        uint8_t v;
        s->read(reg, &v, 1);
        return v;
    }
    void out(unsigned reg, uint8_t v) { s->write(reg, &v, 1); }
    int fds[2];
    std::vector<bool> levels;
    std::unique_ptr<Serial> s;
};
}  // namespace

TEST(IoBus, DispatchesByRangeAndFloatsUnclaimed) {
    IoBus bus;
    Recorder a, b;
    bus.add(0x100, 8, &a);
    bus.add(0x200, 4, &b);
    EXPECT_THROW(bus.add(0x104, 8, &b), std::logic_error);
    uint8_t d[4];
    EXPECT_TRUE(bus.read(0x103, d, 2));
    EXPECT_EQ(a.reads.back(), 3u);
    EXPECT_FALSE(bus.read(0x300, d, 4));
    EXPECT_EQ(le_load(d, 4), 0xffffffffu);  // nothing decodes it: all ones
    EXPECT_FALSE(bus.read(0x107, d, 2));   // straddles the end of a's range
    EXPECT_TRUE(bus.write(0x203, d, 1));
    EXPECT_EQ(b.writes.back(), 3u);
}

TEST(Serial, TransmitsAndLooksLikeA16550) {
    Uart u;
    EXPECT_EQ(u.in(5) & 0x60, 0x60);  // THR empty and idle
    u.out(0, 'A');
    char c = 0;
    ASSERT_EQ(read(u.fds[0], &c, 1), 1);
    EXPECT_EQ(c, 'A');
    u.out(2, 0x01);                  // enable FIFOs
    EXPECT_EQ(u.in(2) & 0xc0, 0xc0);  // 16550A FIFO bits in IIR
    u.out(7, 0x5a);
    EXPECT_EQ(u.in(7), 0x5a);  // scratch register
    u.out(3, 0x80);            // DLAB: divisor latch instead of data/IER
    u.out(0, 0x01);
    u.out(1, 0x00);
    EXPECT_EQ(u.in(0), 0x01);
    u.out(3, 0x03);
}

TEST(Serial, LoopbackMirrorsModemLinesAndData) {
    Uart u;
    u.out(4, 0x1a);  // loop | RTS | OUT2: what Linux's probe writes
    EXPECT_EQ(u.in(6) & 0xf0, 0x90);
    u.out(0, 'z');
    EXPECT_EQ(u.in(5) & 1, 1);
    EXPECT_EQ(u.in(0), 'z');
}

TEST(Serial, ThrEmptyInterruptRaisedAndAcknowledged) {
    Uart u;
    u.out(1, 0x02);  // enable THRE interrupt while the THR is empty
    ASSERT_FALSE(u.levels.empty());
    EXPECT_TRUE(u.levels.back());
    EXPECT_EQ(u.in(2) & 0x0f, 0x02);  // reading IIR acknowledges it...
    EXPECT_FALSE(u.levels.back());     // ...and drops the line
    EXPECT_EQ(u.in(2) & 0x0f, 0x01);
    u.out(0, 'x');  // after a write the THR empties again
    EXPECT_TRUE(u.levels.back());
    char c;
    ASSERT_EQ(read(u.fds[0], &c, 1), 1);
}

TEST(Serial, ReceivedDataRaisesRxInterruptUntilDrained) {
    Uart u;
    u.out(1, 0x01);
    const uint8_t msg[] = {'h', 'i'};
    u.s->receive(msg, 2);
    EXPECT_TRUE(u.levels.back());
    EXPECT_EQ(u.in(2) & 0x0f, 0x04);
    EXPECT_EQ(u.in(0), 'h');
    EXPECT_TRUE(u.levels.back());
    EXPECT_EQ(u.in(0), 'i');
    EXPECT_FALSE(u.levels.back());
    EXPECT_EQ(u.in(5) & 1, 0);
    u.s->receive(msg, 2);
    u.out(2, 0x03);  // FIFO reset drops pending input, as on hardware
    EXPECT_EQ(u.in(5) & 1, 0);
}

TEST(AcpiPm, PoweroffOnlyOnS5WithSlpEn) {
    Stop stop;
    AcpiPm pm(stop);
    uint8_t v[2];
    const uint64_t cnt = AcpiPorts::kPm1aCnt - AcpiPorts::kBase;
    pm.read(cnt, v, 2);
    EXPECT_EQ(v[0] & 1, 1);  // SCI_EN: already in ACPI mode
    le_store(v, 2, AcpiPorts::kSlpTypS5 << 10);  // type without enable: nothing yet
    pm.write(cnt, v, 2);
    EXPECT_FALSE(stop.requested());
    le_store(v, 2, (1u << 10) | (1u << 13));  // S1 with enable: not a poweroff
    pm.write(cnt, v, 2);
    EXPECT_FALSE(stop.requested());
    le_store(v, 2, (AcpiPorts::kSlpTypS5 << 10) | (1u << 13));
    pm.write(cnt, v, 2);
    EXPECT_TRUE(stop.requested());
    EXPECT_EQ(stop.status(), 0);
}

TEST(AcpiPm, ResetRegisterNeedsTheResetValue) {
    Stop stop;
    AcpiPm pm(stop);
    uint8_t v = 0x02;
    pm.write(AcpiPorts::kReset - AcpiPorts::kBase, &v, 1);
    EXPECT_FALSE(stop.requested());
    v = AcpiPorts::kResetValue;
    pm.write(AcpiPorts::kReset - AcpiPorts::kBase, &v, 1);
    EXPECT_TRUE(stop.requested());
}

TEST(AcpiPm, StatusIsWriteOneToClear) {
    Stop stop;
    AcpiPm pm(stop);
    uint8_t v[2] = {0xff, 0xff};
    pm.write(2, v, 2);  // enable register
    pm.read(2, v, 2);
    EXPECT_EQ(le_load(v, 2), 0xffffu);
}
