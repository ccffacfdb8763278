#include "vmm/serial.hpp"

#include <unistd.h>

#include <cerrno>

namespace minivmm {

namespace {
// Register numbers and bits from the 8250/16550 datasheet.
enum : unsigned { kRbrThr = 0, kIer = 1, kIirFcr = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7 };
constexpr uint8_t kIerRxData = 0x01, kIerThrEmpty = 0x02;
constexpr uint8_t kIirNone = 0x01, kIirThrEmpty = 0x02, kIirRxData = 0x04, kIirFifos = 0xc0;
constexpr uint8_t kFcrEnable = 0x01, kFcrClearRx = 0x02;
constexpr uint8_t kLcrDlab = 0x80;
constexpr uint8_t kMcrLoop = 0x10;
constexpr uint8_t kLsrDataReady = 0x01, kLsrThrEmpty = 0x20, kLsrIdle = 0x40;
constexpr uint8_t kMsrDcd = 0x80, kMsrDsr = 0x20, kMsrCts = 0x10;
}  // namespace

Serial::Serial(std::function<void(bool)> irq, int out_fd) : irq_(std::move(irq)), out_fd_(out_fd) {}

void Serial::read(uint64_t offset, uint8_t* data, uint32_t size) {
    std::lock_guard<std::mutex> g(mu_);
    for (uint32_t i = 0; i < size; i++) data[i] = read_reg(static_cast<unsigned>(offset + i) & 7);
    update_irq();
}

void Serial::write(uint64_t offset, const uint8_t* data, uint32_t size) {
    std::lock_guard<std::mutex> g(mu_);
    for (uint32_t i = 0; i < size; i++) write_reg(static_cast<unsigned>(offset + i) & 7, data[i]);
    update_irq();
}

uint8_t Serial::pending_iir() const {
    if ((ier_ & kIerRxData) && !rx_.empty()) return kIirRxData;
    if ((ier_ & kIerThrEmpty) && thr_interrupt_) return kIirThrEmpty;
    return kIirNone;
}

uint8_t Serial::read_reg(unsigned reg) {
    bool dlab = lcr_ & kLcrDlab;
    switch (reg) {
        case kRbrThr: {
            if (dlab) return dll_;
            if (rx_.empty()) return 0;
            uint8_t c = rx_.front();
            rx_.pop_front();
            space_.notify_one();
            return c;
        }
        case kIer: return dlab ? dlm_ : ier_;
        case kIirFcr: {
            uint8_t iir = pending_iir();
            // Reading IIR acknowledges a THR-empty interrupt (16550 datasheet).
            if (iir == kIirThrEmpty) thr_interrupt_ = false;
            return iir | ((fcr_ & kFcrEnable) ? kIirFifos : 0);
        }
        case kLcr: return lcr_;
        case kMcr: return mcr_;
        case kLsr: return kLsrThrEmpty | kLsrIdle | (rx_.empty() ? 0 : kLsrDataReady);
        case kMsr:
            // In loopback the modem inputs mirror the outputs; Linux's probe
            // checks exactly this to tell a real UART from an empty port.
            if (mcr_ & kMcrLoop)
                return static_cast<uint8_t>(((mcr_ & 0x02) << 3) | ((mcr_ & 0x01) << 5) |
                                            ((mcr_ & 0x04) << 4) | ((mcr_ & 0x08) << 4));
            return kMsrDcd | kMsrDsr | kMsrCts;
        case kScr: return scr_;
    }
    return 0xff;
}

void Serial::write_reg(unsigned reg, uint8_t v) {
    bool dlab = lcr_ & kLcrDlab;
    switch (reg) {
        case kRbrThr:
            if (dlab) {
                dll_ = v;
                return;
            }
            transmit(v);
            // Transmission is instant, so the THR is empty again at once.
            thr_interrupt_ = true;
            return;
        case kIer:
            if (dlab) {
                dlm_ = v;
                return;
            }
            // Enabling the THR-empty interrupt while the THR is empty raises it.
            if ((v & kIerThrEmpty) && !(ier_ & kIerThrEmpty)) thr_interrupt_ = true;
            ier_ = v & 0x0f;
            return;
        case kIirFcr:
            if (v & kFcrClearRx) {
                rx_.clear();
                space_.notify_one();
            }
            fcr_ = v & kFcrEnable;
            return;
        case kLcr: lcr_ = v; return;
        case kMcr: mcr_ = v & 0x1f; return;
        case kScr: scr_ = v; return;
        default: return;  // LSR and MSR are read-only
    }
}

void Serial::transmit(uint8_t c) {
    if (mcr_ & kMcrLoop) {
        if (rx_.size() < kRxLimit) rx_.push_back(c);
        return;
    }
    if (on_output_) on_output_();
    // The console is best effort: a closed or full stdout must not stop the guest.
    while (::write(out_fd_, &c, 1) < 0 && errno == EINTR) {
    }
}

void Serial::update_irq() {
    bool level = pending_iir() != kIirNone;
    if (level != irq_level_) {
        irq_level_ = level;
        irq_(level);
    }
}

void Serial::receive(const uint8_t* data, size_t len) {
    std::unique_lock<std::mutex> g(mu_);
    for (size_t i = 0; i < len; i++) {
        space_.wait(g, [&] { return stopping_ || rx_.size() < kRxLimit; });
        if (stopping_) return;
        rx_.push_back(data[i]);
    }
    update_irq();
}

void Serial::shutdown() {
    std::lock_guard<std::mutex> g(mu_);
    stopping_ = true;
    space_.notify_all();
}

}  // namespace minivmm
