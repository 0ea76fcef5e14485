# Thin wrapper for the README's commands; CMake does the building.
#   make demo   set up, build, run the demo
#   make test   set up, build, run every test (plain build, then ASan+UBSan)
#   make bench  set up, build, run the benchmarks (BENCH_ARGS=--quick)
BUILD      ?= build
ASAN_BUILD ?= build-asan
GENERATOR  := $(shell command -v ninja >/dev/null 2>&1 && echo Ninja || echo "Unix Makefiles")
CTEST_ARGS ?=
JOBS       ?= $(shell nproc)

.PHONY: all setup build build-asan demo test test-plain test-asan bench soak install clean

all: build

setup:
	@scripts/setup.sh

$(BUILD)/CMakeCache.txt: | setup
	@cmake -S . -B $(BUILD) -G "$(GENERATOR)" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

build: setup $(BUILD)/CMakeCache.txt
	@cmake --build $(BUILD) -j $(JOBS)

$(ASAN_BUILD)/CMakeCache.txt: | setup
	@TLSSHIM_SANITIZE=address,undefined cmake -S . -B $(ASAN_BUILD) -G "$(GENERATOR)" \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DBORINGSSL_SOURCE_DIR=$(CURDIR)/build/_deps/boringssl-src >/dev/null

build-asan: setup $(ASAN_BUILD)/CMakeCache.txt
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

demo: build
	@examples/demo/run.sh

test-plain: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

test-asan: build-asan
	@cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

test: test-plain test-asan

bench: build
	@bench/run.sh $(BENCH_ARGS)

install: build
	@cmake --install $(BUILD) --prefix $(or $(PREFIX),/usr/local)

clean:
	rm -rf $(BUILD)/CMakeFiles $(BUILD)/lib $(BUILD)/bin $(ASAN_BUILD)
