// CHECK for the fuzz targets: a failed check names itself on the
// sanitizers' report fd, which -close_fd_mask=2 leaves open, and stops like
// a crash, so libFuzzer keeps the input.
#pragma once
#include <sanitizer/common_interface_defs.h>

#define FUZZ_STR2(x) #x
#define FUZZ_STR(x) FUZZ_STR2(x)
#define CHECK(cond)                                                                                 \
    do {                                                                                            \
        if (!(cond)) {                                                                              \
            __sanitizer_report_error_summary("CHECK failed at " __FILE__ ":" FUZZ_STR(__LINE__) ": " #cond); \
            __builtin_trap();                                                                       \
        }                                                                                           \
    } while (0)
