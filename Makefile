# kiln — thin wrapper over CMake/CTest and the local-stack scripts.
#   make up      install packages, build, start the whole local stack under var/
#   make down    stop the local stack
#   make test    install packages, build with ASan/UBSan, run every test (CTest)
#   make bench   install packages, build optimized, run the benchmarks (BENCH="api leasing agent e2e inbox health ingest")
#   make build   optimized build only (build/)

BUILD      ?= build
TEST_BUILD ?= build-test
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_ARGS ?=
# Tests wait on servers and clocks more than they compute: one more test than cores keeps
# both cores busy (the suite's 164 tests take ~21 min at -j3 on a 2-core box).
TEST_JOBS  ?= $(shell echo $$(( $(JOBS) + 1 )))

.PHONY: all deps build test-build up down test bench clean format

all: build

deps:
	@bash deploy/local/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_SANITIZE=OFF >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test-build: deps
	@cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DKILN_SANITIZE=ON >/dev/null
	@cmake --build $(TEST_BUILD) -j $(JOBS)

test: test-build
	@cd $(TEST_BUILD) && ctest --output-on-failure -j $(TEST_JOBS) $(CTEST_ARGS)

up: build
	@bash deploy/local/up.sh $(BUILD)

down:
	@bash deploy/local/down.sh

bench: build
	@bash tests/bench/run.sh $(BUILD) $(BENCH)

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(TEST_BUILD)
