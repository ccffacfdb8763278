// The UART's saved state. Every register is checked as the guest could have
// left it: bits write_reg() masks off cannot be set in a loaded state.
#include "vmm/serial.hpp"

namespace minivmm {

void Serial::save(state::Writer& w) const {
    std::lock_guard<std::mutex> g(mu_);
    for (uint8_t v : {ier_, lcr_, mcr_, scr_, fcr_, dll_, dlm_}) w.u8(v);
    w.boolean(thr_interrupt_);
    w.blob(std::vector<uint8_t>(rx_.begin(), rx_.end()));
}

void Serial::load(state::Reader& r) {
    uint8_t ier = r.u8(), lcr = r.u8(), mcr = r.u8(), scr = r.u8(), fcr = r.u8(), dll = r.u8(), dlm = r.u8();
    bool thr = r.boolean();
    auto rx = r.blob(kRxLimit);
    if (ier & ~0x0fu) r.fail("serial IER: bits the UART does not have");
    if (mcr & ~0x1fu) r.fail("serial MCR: bits the UART does not have");
    if (fcr > 1) r.fail("serial FCR: only FIFO enable is kept");
    std::lock_guard<std::mutex> g(mu_);
    ier_ = ier, lcr_ = lcr, mcr_ = mcr, scr_ = scr, fcr_ = fcr, dll_ = dll, dlm_ = dlm;
    thr_interrupt_ = thr;
    rx_.assign(rx.begin(), rx.end());
    update_irq();
}

}  // namespace minivmm
