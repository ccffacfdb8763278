// The host terminal side of the guest console: stdin feeds the UART, and a
// terminal is put in raw mode (Ctrl-C still stops the VM) and restored at exit.
#pragma once
#include <termios.h>

#include "vmm/thread.hpp"

namespace minivmm {

class Serial;

class Console {
public:
    Console(Serial& serial, int stop_fd);
    ~Console();  // joins the reader and restores the terminal
    Console(const Console&) = delete;
    Console& operator=(const Console&) = delete;

private:
    void reader();
    Serial& serial_;
    int stop_fd_;
    bool restore_ = false;
    termios saved_{};
    Thread thread_;
};

}  // namespace minivmm
