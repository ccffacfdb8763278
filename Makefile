# minivmm: plain Makefile. `make` builds ./minivmm; see README for demo/test/bench.
CXX      ?= g++
CXXFLAGS ?= -O2 -g
CXXFLAGS += -std=c++20 -Wall -Wextra -Wshadow -Werror=return-type -I. -MMD -MP -pthread
LDFLAGS  += -pthread
BUILD    := build
IMAGES   := $(BUILD)/images

VMM_SRCS := $(filter-out vmm/main.cpp,$(wildcard vmm/*.cpp virtio/*.cpp vhost/*.cpp))
VMM_OBJS := $(VMM_SRCS:%.cpp=$(BUILD)/obj/%.o)
UNIT_SRCS := $(wildcard tests/unit/*.cpp)
UNIT_OBJS := $(UNIT_SRCS:%.cpp=$(BUILD)/obj/%.o)

.PHONY: all deps images unit integration test demo bench clean
all: minivmm

minivmm: $(BUILD)/obj/vmm/main.o $(BUILD)/libminivmm.a
	$(CXX) $(LDFLAGS) -o $@ $^

$(BUILD)/libminivmm.a: $(VMM_OBJS)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/obj/%.o: %.cpp
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) -c -o $@ $<

$(BUILD)/unit-tests: $(UNIT_OBJS) $(BUILD)/libminivmm.a
	$(CXX) $(LDFLAGS) -o $@ $^ -lgtest -lgtest_main

deps:
	@tools/install-deps.sh

images:
	@guest-images/build.sh $(IMAGES)

unit: $(BUILD)/unit-tests
	$(BUILD)/unit-tests

integration: minivmm images
	@tests/run-integration.sh

# Everything, with one summary line at the end (tests/summary.sh).
test: deps
	@$(MAKE) --no-print-directory all $(BUILD)/unit-tests images
	@tests/run-all.sh

demo: deps
	@$(MAKE) --no-print-directory all images
	@tools/demo.sh

bench: deps
	@$(MAKE) --no-print-directory all images
	@tools/bench.sh

clean:
	rm -rf $(BUILD) minivmm

-include $(VMM_OBJS:.o=.d) $(UNIT_OBJS:.o=.d) $(BUILD)/obj/vmm/main.d
