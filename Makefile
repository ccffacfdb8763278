# minivmm: plain Makefile. `make` builds ./minivmm; see README for demo/test/bench.
CXX      ?= g++
CXXFLAGS ?= -O2 -g
CXXFLAGS += -std=c++20 -Wall -Wextra -Wshadow -Werror=return-type -I. -MMD -MP -pthread
LDFLAGS  += -pthread
LDLIBS   := -lseccomp -lcap-ng -lbpf -lelf -lz -llzma -llz4 -lzstd
# minivmm itself: what it runs is resident for as long as the guest runs, so
# it links the C++ runtime and its two small libraries in (only the parts it
# uses: --gc-sections) and maps no shared library but glibc's. Shared, they
# were 2 MiB of its 4.5 resident (vmm/README.md, Footprint). glibc stays
# shared: a static one cannot look --user NAME up through NSS reliably.
# The decompressors (direct boot) are linked in for the same reason, and
# libbpf (with its libelf), which loads the tap's steering program once.
VMM_LDFLAGS := -static-libstdc++ -static-libgcc -Wl,--gc-sections -Wl,--as-needed
VMM_LDLIBS  := -Wl,-Bstatic -lseccomp -lcap-ng -lbpf -lelf -lz -llzma -llz4 -lzstd -Wl,-Bdynamic
BUILD    := build
# The guests' (and outer host's) Debian kernel series: 6.1 or 6.12. The rig
# reads the same variable (guest-images/build.sh, tests/rig/outer-run.sh,
# tests/integration/vmtest.py); each series has its own images directory.
MINIVMM_KERNEL ?= 6.1
export MINIVMM_KERNEL
IMAGES   := $(BUILD)/images$(if $(filter-out 6.1,$(MINIVMM_KERNEL)),-$(MINIVMM_KERNEL))

VMM_SRCS := $(filter-out vmm/main.cpp,$(wildcard vmm/*.cpp virtio/*.cpp vhost/*.cpp vhost/ports/*.cpp))
# The tap's RSS steering program (vhost/ports/bpf/), built by clang's BPF
# target and linked in as data for tap_steering.cpp to load.
BPF_CLANG ?= clang
BPF_OBJ  := $(BUILD)/bpf/rss_steering.bpf.o
VMM_OBJS := $(VMM_SRCS:%.cpp=$(BUILD)/obj/%.o) $(BUILD)/bpf/rss_steering_blob.o
UNIT_SRCS := $(wildcard tests/unit/*.cpp)
UNIT_OBJS := $(UNIT_SRCS:%.cpp=$(BUILD)/obj/%.o)

.PHONY: all deps images unit integration test demo bench clean fuzz-build fuzz
all: minivmm

minivmm: $(BUILD)/obj/vmm/main.o $(BUILD)/libminivmm.a
	$(CXX) $(LDFLAGS) $(VMM_LDFLAGS) -o $@ $^ $(VMM_LDLIBS)

$(BUILD)/libminivmm.a: $(VMM_OBJS)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/obj/%.o: %.cpp
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) -c -o $@ $<

$(BPF_OBJ): vhost/ports/bpf/rss_steering.bpf.c vhost/ports/bpf/rss_steering.h
	@mkdir -p $(@D)
	$(BPF_CLANG) -O2 -g -target bpf -Wall -Werror -I. -I/usr/include/$(shell $(CXX) -dumpmachine) -c -o $@ $<

# Its symbols are named after the file: _binary_rss_steering_bpf_o_start/_end.
$(BUILD)/bpf/rss_steering_blob.o: $(BPF_OBJ)
	cd $(@D) && $(LD) -r -b binary -z noexecstack -o $(@F) $(<F)

$(BUILD)/unit-tests: $(UNIT_OBJS) $(BUILD)/libminivmm.a
	$(CXX) $(LDFLAGS) -o $@ $^ -lgtest -lgtest_main $(LDLIBS)

deps:
	@tools/install-deps.sh

# The integration tests' UDP GSO sender and receiver; static, for the busybox guest.
$(BUILD)/udp_gso: tests/support/udp_gso.cpp
	@mkdir -p $(@D)
	$(CXX) -std=c++20 -O2 -Wall -Wextra -static -o $@ $<

images:
	@guest-images/build.sh $(IMAGES)

unit: $(BUILD)/unit-tests
	$(BUILD)/unit-tests

integration: minivmm images $(BUILD)/udp_gso
	@tests/run-integration.sh

# Everything, with one summary line at the end (tests/run-all.sh).
test: deps
	@$(MAKE) --no-print-directory all $(BUILD)/unit-tests images fuzz-build $(BUILD)/udp_gso
	@tests/run-all.sh

# libFuzzer targets, compiled by clang straight from the sources they
# exercise: libminivmm.a is g++-built and carries no sanitizers or coverage.
FUZZ_CXX     ?= clang++
FUZZ_FLAGS   := -std=c++20 -g -O1 -Wall -Wextra -I. -pthread -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=undefined
FUZZ_SECONDS ?= 120
FUZZERS      := $(BUILD)/fuzz/fuzz_virtqueue $(BUILD)/fuzz/fuzz_pci $(BUILD)/fuzz/fuzz_net_rx $(BUILD)/fuzz/fuzz_net_tx \
                $(BUILD)/fuzz/fuzz_net_ctrl $(BUILD)/fuzz/fuzz_device $(BUILD)/fuzz/fuzz_kernel_image \
                $(BUILD)/fuzz/fuzz_state $(BUILD)/fuzz/fuzz_device_state
FUZZ_HDRS    := $(wildcard vmm/*.hpp virtio/*.hpp tests/support/*.hpp) tests/fuzz/fuzz_check.hpp
# Saved state of the PCI function, its MSI-X table and the virtio-pci transport.
DEVICE_STATE_SRCS := vmm/pci_state.cpp vmm/msix_state.cpp virtio/virtio_pci_state.cpp
# The device as every datapath runs it: make_net_backend and its backends.
FUZZ_NET_BACKENDS := vhost/port_backend.cpp vhost/off.cpp vhost/vhost_rings.cpp vhost/coalesce_timer.cpp virtio/net_coalesce.cpp $(wildcard vhost/*.hpp vhost/ports/*.hpp)

$(BUILD)/fuzz/fuzz_virtqueue: tests/fuzz/fuzz_virtqueue.cpp virtio/virtqueue.cpp vmm/guest_memory.cpp $(FUZZ_HDRS)
$(BUILD)/fuzz/fuzz_pci: tests/fuzz/fuzz_pci.cpp vmm/thread_guard.cpp vmm/thread.cpp vmm/pci.cpp vmm/msix.cpp virtio/virtio_pci.cpp vmm/kvm.cpp vmm/gsi_router.cpp \
                        $(DEVICE_STATE_SRCS) virtio/virtqueue.cpp \
                        vmm/seccomp.cpp vmm/seccomp_policy.cpp $(FUZZ_HDRS)
$(BUILD)/fuzz/fuzz_net_rx: tests/fuzz/fuzz_net_rx.cpp virtio/net_datapath.cpp virtio/virtqueue.cpp \
                           tests/fuzz/net_driver.hpp tests/fuzz/fuzz_support.hpp vhost/ports/port.hpp $(FUZZ_HDRS)
$(BUILD)/fuzz/fuzz_net_tx: tests/fuzz/fuzz_net_tx.cpp virtio/net_datapath.cpp virtio/virtqueue.cpp \
                           tests/fuzz/net_driver.hpp tests/fuzz/fuzz_support.hpp vhost/ports/port.hpp $(FUZZ_HDRS)
$(BUILD)/fuzz/fuzz_net_ctrl: tests/fuzz/fuzz_net_ctrl.cpp virtio/net.cpp virtio/net_ctrl.cpp virtio/net_rss.cpp virtio/net_state.cpp \
                             virtio/net_datapath.cpp \
                             virtio/queue_stats.cpp virtio/virtqueue.cpp vmm/guest_memory.cpp vmm/thread_guard.cpp vmm/thread.cpp vmm/kvm.cpp \
                             vmm/seccomp.cpp vmm/seccomp_policy.cpp $(FUZZ_NET_BACKENDS) \
                             tests/fuzz/fuzz_support.hpp $(FUZZ_HDRS)
$(BUILD)/fuzz/fuzz_device: tests/fuzz/fuzz_device.cpp virtio/virtio_pci.cpp vmm/pci.cpp vmm/msix.cpp vmm/gsi_router.cpp \
                           virtio/net.cpp virtio/net_ctrl.cpp virtio/net_rss.cpp virtio/net_state.cpp virtio/net_datapath.cpp \
                           virtio/queue_stats.cpp $(DEVICE_STATE_SRCS) \
                           virtio/virtqueue.cpp vhost/worker.cpp $(FUZZ_NET_BACKENDS) \
                           vmm/guest_memory.cpp vmm/thread_guard.cpp vmm/thread.cpp vmm/kvm.cpp vmm/seccomp.cpp vmm/seccomp_policy.cpp \
                           tests/fuzz/fuzz_support.hpp $(FUZZ_HDRS)
$(BUILD)/fuzz/fuzz_device_state: tests/fuzz/fuzz_device_state.cpp vmm/serial.cpp vmm/serial_state.cpp vmm/acpi_pm.cpp vmm/acpi_pm_state.cpp \
                                virtio/virtio_pci.cpp vmm/pci.cpp vmm/msix.cpp $(DEVICE_STATE_SRCS) \
                                virtio/net.cpp virtio/net_ctrl.cpp virtio/net_rss.cpp virtio/net_state.cpp virtio/net_datapath.cpp \
                                virtio/queue_stats.cpp virtio/virtqueue.cpp $(FUZZ_NET_BACKENDS) vmm/guest_memory.cpp \
                                vmm/thread_guard.cpp vmm/thread.cpp vmm/kvm.cpp vmm/seccomp.cpp vmm/seccomp_policy.cpp \
                                tests/fuzz/fuzz_support.hpp $(FUZZ_HDRS)
$(BUILD)/fuzz/fuzz_kernel_image: tests/fuzz/fuzz_kernel_image.cpp vmm/kernel_image.cpp vmm/kernel_payload.cpp \
                                 vmm/elf_kernel.cpp vmm/bzimage.cpp vmm/e820.cpp vmm/guest_memory.cpp $(FUZZ_HDRS)
$(BUILD)/fuzz/fuzz_state: tests/fuzz/fuzz_state.cpp vmm/vcpu_state.cpp vmm/vm_state.cpp vmm/kvm.cpp $(FUZZ_HDRS)
$(FUZZERS):
	@mkdir -p $(@D)
	$(FUZZ_CXX) $(FUZZ_FLAGS) -o $@ $(filter %.cpp,$^) $(LDLIBS)

fuzz-build: $(FUZZERS)

# Open-ended fuzzing, FUZZ_SECONDS per target, growing a corpus kept in
# build/fuzz/corpus, starting from the seeds in tests/fuzz/corpus where a
# target has some; crashing inputs are saved in build/fuzz. (make test runs
# a short fixed-seed pass instead: tests/run-fuzz.sh.)
fuzz: fuzz-build
	@for f in $(FUZZERS); do \
	    n=$$(basename $$f); c=$(BUILD)/fuzz/corpus/$$n; mkdir -p $$c; \
	    echo "== $$f for $(FUZZ_SECONDS) s"; \
	    $$f $$c $$(ls -d tests/fuzz/corpus/$$n 2>/dev/null) -max_total_time=$(FUZZ_SECONDS) -len_control=0 \
	        -max_len=1024 -close_fd_mask=2 -artifact_prefix=$(BUILD)/fuzz/ || exit 1; \
	done

demo: deps
	@$(MAKE) --no-print-directory all images
	@tools/demo.sh

# make bench [QUICK=1]: the datapath microbenchmark here, then in the outer
# host the same against vhost-net, the boot table and the VM table
# (tools/bench.sh, tools/bench/README.md). Never part of make test.
BENCH_DATAPATH := $(BUILD)/bench/bench_datapath

$(BENCH_DATAPATH): tools/bench_datapath.cpp $(wildcard tools/datapath/*.hpp tests/support/*.hpp) $(BUILD)/libminivmm.a
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libminivmm.a -lbenchmark $(LDLIBS)

bench: deps
	@$(MAKE) --no-print-directory all images $(BENCH_DATAPATH) $(BUILD)/udp_gso
	@QUICK=$(QUICK) tools/bench.sh

clean:
	rm -rf $(BUILD) minivmm

-include $(VMM_OBJS:.o=.d) $(UNIT_OBJS:.o=.d) $(BUILD)/obj/vmm/main.d
-include $(BENCH_DATAPATH).d
