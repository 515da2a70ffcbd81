# libreclaim - GNU make.
#
#   make                 libreclaim.a and libreclaim.so in build/
#   make check           every test, then again under ASan+UBSan and TSan
#   make demo            the storage-stack demo
#   make bench           the benchmarks (bench/), figures beside the raw allocator
#   make fuzz            the API-sequence fuzzer for FUZZ_TIME (60) seconds
#   make install PREFIX=/usr/local
#
# Knobs: CC=gcc|clang, BACKEND=libc|mimalloc|jemalloc, SAN=asan|tsan (one
# build directory each), V=1 for full command lines.

VERSION_MAJOR := 0
VERSION_MINOR := 1
VERSION       := $(VERSION_MAJOR).$(VERSION_MINOR)

CC      ?= cc
PREFIX  ?= /usr/local
BACKEND ?= libc
SAN     ?=
BUILD   ?= build$(if $(SAN),-$(SAN))$(if $(filter-out libc,$(BACKEND)),-$(BACKEND))

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CSTD     := -std=c11 -D_GNU_SOURCE
OPT      ?= -O2 -g
BASE_CFLAGS := $(CSTD) $(WARN) $(OPT) -pthread -Iinclude -Isrc
LIB_CFLAGS  := -fPIC -fno-semantic-interposition
LDLIBS_LIB  := -pthread

ifeq ($(BACKEND),mimalloc)
  BASE_CFLAGS += -DRCL_BACKEND_MIMALLOC
  LDLIBS_LIB  += -lmimalloc
  BACKEND_DEPS := libmimalloc-dev
else ifeq ($(BACKEND),jemalloc)
  BASE_CFLAGS += -DRCL_BACKEND_JEMALLOC
  LDLIBS_LIB  += -ljemalloc
  BACKEND_DEPS := libjemalloc-dev
else ifneq ($(BACKEND),libc)
  $(error BACKEND must be libc, mimalloc or jemalloc)
endif

ifeq ($(SAN),asan)
  SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
else ifeq ($(SAN),tsan)
  SAN_FLAGS := -fsanitize=thread -fno-omit-frame-pointer
else ifneq ($(SAN),)
  $(error SAN must be asan or tsan)
endif
CFLAGS_ALL := $(BASE_CFLAGS) $(SAN_FLAGS) $(CFLAGS)
LDFLAGS_ALL := $(SAN_FLAGS) $(LDFLAGS)
# Programs export their symbols so that the lock checker's backtraces
# (backtrace_symbols) name the functions, not just offsets.
EXE_LDFLAGS := $(LDFLAGS_ALL) -rdynamic

Q := $(if $(V),,@)

LIB_SRCS := $(sort $(wildcard src/*.c))
LIB_OBJS := $(LIB_SRCS:src/%.c=$(BUILD)/obj/%.o)
HEADERS  := include/reclaim.h $(wildcard src/*.h)
STATIC   := $(BUILD)/libreclaim.a
SONAME   := libreclaim.so.$(VERSION_MAJOR)
SHARED   := $(BUILD)/libreclaim.so.$(VERSION)

# tests/test_*.c: one cmocka program each. tests/progs/*.c: programs the
# tests run (children in cgroups, example drivers). Both link the static
# library.
TEST_SRCS := $(sort $(wildcard tests/test_*.c))
TESTS     := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
PROG_SRCS := $(sort $(wildcard tests/progs/*.c))
PROGS     := $(PROG_SRCS:tests/progs/%.c=$(BUILD)/tests/progs/%)
TEST_HELPERS := $(wildcard tests/helpers/*.c)

# examples/NAME/*.c: one program per directory.
EXAMPLE_DIRS := $(patsubst %/,%,$(sort $(dir $(wildcard examples/*/*.c))))
EXAMPLES     := $(EXAMPLE_DIRS:examples/%=$(BUILD)/examples/%)

# bench/*.c: one program each, linked against the shared library (the way
# users link it) and, for the comparison, the raw allocators.
BENCH_SRCS := $(sort $(wildcard bench/*.c))
BENCHES    := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)

DEMO ?= storage-stack
DEMO_ARGS ?=

.PHONY: all lib tests examples benches check test check-deps demo bench install uninstall clean fuzz
.DELETE_ON_ERROR:

all: lib
lib: $(STATIC) $(BUILD)/libreclaim.so

$(BUILD)/obj/%.o: src/%.c $(HEADERS) | $(BUILD)/obj
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS_ALL) $(LIB_CFLAGS) -c $< -o $@

$(STATIC): $(LIB_OBJS)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(SHARED): $(LIB_OBJS) src/reclaim.map
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared $(LDFLAGS_ALL) -Wl,-soname,$(SONAME) -Wl,--version-script=src/reclaim.map \
		-Wl,-z,defs -o $@ $(LIB_OBJS) $(LDLIBS_LIB)

$(BUILD)/libreclaim.so: $(SHARED)
	$(Q)ln -sf libreclaim.so.$(VERSION) $(BUILD)/$(SONAME)
	$(Q)ln -sf $(SONAME) $@

$(BUILD)/obj:
	$(Q)mkdir -p $@ $(BUILD)/tests/progs $(BUILD)/examples $(BUILD)/bench

$(BUILD)/tests/%: tests/%.c $(TEST_HELPERS) tests/helpers.h $(STATIC) | $(BUILD)/obj
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS_ALL) -Itests $(EXE_LDFLAGS) $(TEST_WRAP) -o $@ $< $(TEST_HELPERS) $(STATIC) -lcmocka $(LDLIBS_LIB) -lm

# The fault-injection test reroutes the library's own allocation, mmap,
# thread and eventfd calls through its wrappers (tests/test_fault.c); the
# library itself is built as always.
FAULT_CALLS := malloc calloc realloc posix_memalign strdup mmap eventfd pthread_create
ifeq ($(BACKEND),mimalloc)
  FAULT_CALLS += mi_malloc mi_realloc mi_malloc_aligned
else ifeq ($(BACKEND),jemalloc)
  FAULT_CALLS += mallocx rallocx
endif
$(BUILD)/tests/test_fault: TEST_WRAP := $(foreach f,$(FAULT_CALLS),-Wl,--wrap=$(f))

$(BUILD)/tests/progs/%: tests/progs/%.c $(STATIC) | $(BUILD)/obj
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS_ALL) -Itests $(EXE_LDFLAGS) -o $@ $< $(STATIC) $(LDLIBS_LIB) -lm

.SECONDEXPANSION:
$(BUILD)/examples/%: $$(wildcard examples/%/*.c) $$(wildcard examples/%/*.h) $(STATIC) | $(BUILD)/obj
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS_ALL) $(EXE_LDFLAGS) -o $@ $(filter %.c,$^) $(STATIC) $(LDLIBS_LIB) -lm

$(BUILD)/bench/%: bench/%.c $(wildcard bench/*.h) $(BUILD)/libreclaim.so | $(BUILD)/obj
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS_ALL) -Ibench $(LDFLAGS_ALL) -o $@ $< -L$(BUILD) -Wl,-rpath,'$$ORIGIN/..' -lreclaim $(LDLIBS_LIB) -lm

tests: $(TESTS) $(PROGS) $(EXAMPLES)
examples: $(EXAMPLES)
benches: $(BENCHES)

# Installs what the tests need when it is missing and we are root.
check-deps:
	$(Q)EXTRA_DEPS="$(BACKEND_DEPS)" sh tools/check-deps.sh

# One run of every test in this build.
test: check-deps
	$(Q)$(MAKE) --no-print-directory tests
	$(Q)BUILD=$(BUILD) SAN=$(SAN) sh tools/run-tests.sh $(TESTS)

check: check-deps
	$(Q)$(MAKE) --no-print-directory test
	$(Q)$(MAKE) --no-print-directory test SAN=asan
	$(Q)$(MAKE) --no-print-directory test SAN=tsan

demo: $(BUILD)/examples/$(DEMO)
	$(Q)./$(BUILD)/examples/$(DEMO) $(DEMO_ARGS)

bench: $(BENCHES)
	$(Q)BACKEND=$(BACKEND) sh tools/run-bench.sh $(BUILD) $(BENCHES)

# The API-sequence fuzzer (tests/fuzz/): clang's libFuzzer with ASan and
# UBSan, the library built alongside with coverage. FUZZ_TIME seconds.
FUZZ_TIME  ?= 60
FUZZ_BUILD := build-fuzz
FUZZ_FLAGS := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
fuzz:
	$(Q)$(MAKE) --no-print-directory CC=clang SAN=asan BUILD=$(FUZZ_BUILD) \
		CFLAGS="-fsanitize=fuzzer-no-link" $(FUZZ_BUILD)/libreclaim.a
	@$(if $(Q),echo "  CC      $(FUZZ_BUILD)/fuzz_api")
	$(Q)clang $(BASE_CFLAGS) $(FUZZ_FLAGS) -o $(FUZZ_BUILD)/fuzz_api tests/fuzz/fuzz_api.c \
		$(FUZZ_BUILD)/libreclaim.a $(LDLIBS_LIB)
	$(Q)mkdir -p $(FUZZ_BUILD)/corpus
	$(Q)ASAN_OPTIONS=detect_leaks=1 ./$(FUZZ_BUILD)/fuzz_api -max_total_time=$(FUZZ_TIME) \
		-max_len=4096 -timeout=20 -print_final_stats=1 $(FUZZ_BUILD)/corpus

install: lib
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 include/reclaim.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(STATIC) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(SHARED) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libreclaim.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libreclaim.so
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' \
		-e 's|@LIBS_PRIVATE@|$(LDLIBS_LIB)|g' reclaim.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/reclaim.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/include/reclaim.h $(DESTDIR)$(PREFIX)/lib/libreclaim.* \
		$(DESTDIR)$(PREFIX)/lib/pkgconfig/reclaim.pc

clean:
	rm -rf build build-*
