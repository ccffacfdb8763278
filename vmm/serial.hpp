// A 16550A UART: the guest's console on COM1.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>

#include "vmm/io_bus.hpp"
#include "vmm/state_stream.hpp"

namespace minivmm {

class Serial : public IoDevice {
public:
    static constexpr uint16_t kCom1 = 0x3f8;
    static constexpr uint32_t kCom1Irq = 4;

    // irq is called with the new line level whenever it changes; out_fd gets
    // every byte the guest transmits.
    Serial(std::function<void(bool)> irq, int out_fd);
    // Called with each byte the guest transmits, before it is written out
    // (the boot phase times); set before the guest runs.
    void on_output(std::function<void()> f) { on_output_ = std::move(f); }

    void read(uint64_t offset, uint8_t* data, uint32_t size) override;
    void write(uint64_t offset, const uint8_t* data, uint32_t size) override;

    // Host input for the guest. Blocks while the receive buffer is full, so a
    // fast producer (a pipe) cannot make the VMM hold unbounded input.
    void receive(const uint8_t* data, size_t len);
    void shutdown();  // wakes a blocked receive() for exit

    // Saved state (serial_state.cpp): the registers and the bytes the guest
    // has not read yet. load() is for a UART fresh from construction, before
    // the guest runs; it raises the interrupt line again if one was pending.
    void save(state::Writer& w) const;
    void load(state::Reader& r);

private:
    uint8_t read_reg(unsigned reg);
    void write_reg(unsigned reg, uint8_t v);
    void transmit(uint8_t c);
    uint8_t pending_iir() const;
    void update_irq();

    // Receive buffer bound: what a 16550 FIFO-less guest may leave unread.
    static constexpr size_t kRxLimit = 4096;
    mutable std::mutex mu_;
    std::condition_variable space_;
    std::function<void(bool)> irq_;
    std::function<void()> on_output_;
    int out_fd_;
    bool irq_level_ = false;
    bool stopping_ = false;
    std::deque<uint8_t> rx_;
    bool thr_interrupt_ = false;  // "THR empty" raised and not yet acknowledged
    uint8_t ier_ = 0, lcr_ = 0, mcr_ = 0, scr_ = 0, fcr_ = 0;
    uint8_t dll_ = 0x0c, dlm_ = 0;  // 9600 baud: what firmware would leave
};

}  // namespace minivmm
