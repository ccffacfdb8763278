// Temporary files for the saved-state tests: records are written to an fd.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <vector>

#include "vmm/fd.hpp"

namespace minivmm::testing {

inline Fd temp_file() {
    FILE* f = std::tmpfile();
    Fd fd(::dup(fileno(f)));
    std::fclose(f);  // the dup keeps the (already unlinked) file
    return fd;
}

inline std::vector<uint8_t> file_bytes(int fd) {
    std::vector<uint8_t> v(size_t(::lseek(fd, 0, SEEK_END)));
    EXPECT_EQ(::pread(fd, v.data(), v.size(), 0), ssize_t(v.size()));
    return v;
}

inline Fd file_with(const std::vector<uint8_t>& bytes) {
    Fd f = temp_file();
    EXPECT_EQ(::write(f.get(), bytes.data(), bytes.size()), ssize_t(bytes.size()));
    ::lseek(f.get(), 0, SEEK_SET);
    return f;
}

}  // namespace minivmm::testing
