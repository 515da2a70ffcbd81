# SPDX-License-Identifier: MIT
# libreclaim - GNU make.
#
#   make                 libreclaim.a and libreclaim.so in build/
#   make check           every test, then again under ASan+UBSan and TSan,
#                        then the repository checks (license lines, ABI,
#                        man pages, options table, install); one summary line
#   make demo            the storage-stack demo
#   make bench           the benchmarks (bench/), figures beside the raw allocator
#   make man             the man pages (build/man/, from docs/man/*.scd)
#   make fuzz            the API-sequence fuzzer for FUZZ_TIME (60) seconds
#   make install PREFIX=/usr/local [LIBDIR=...] [DESTDIR=...]
#
# Knobs: CC=gcc|clang, BACKEND=libc|mimalloc|jemalloc, SAN=asan|tsan,
# DEBUG=1 (invariant checks, src/debug.h; on under SAN too) (one build
# directory each), V=1 for full command lines. A build directory
# remembers the compiler and flags it was built with: changing CC, CFLAGS
# or LDFLAGS rebuilds everything in it.

# The version lives in VERSION alone; the header's RCL_VERSION_* must agree
# (src/version.c fails to compile otherwise), and reclaim.pc is written from it.
VERSION       := $(shell cat VERSION)
VERSION_MAJOR := $(word 1,$(subst ., ,$(VERSION)))
VERSION_MINOR := $(word 2,$(subst ., ,$(VERSION)))
VERSION_PATCH := $(word 3,$(subst ., ,$(VERSION)))

CC      ?= cc
PREFIX  ?= /usr/local
LIBDIR  ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR  ?= $(PREFIX)/share/man
BACKEND ?= libc
SAN     ?=
BUILD   ?= build$(if $(SAN),-$(SAN))$(if $(DEBUG),-debug)$(if $(filter-out libc,$(BACKEND)),-$(BACKEND))

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
  # libjemalloc.a calls libm (exp, log, round), and jemalloc.pc names no
  # Libs.private: a program linked statically learns it from ours alone.
  PC_LIBS_PRIVATE := -lm
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
CFLAGS_ALL := $(BASE_CFLAGS) $(if $(DEBUG),-DRCL_DEBUG=1) $(SAN_FLAGS) $(CFLAGS)
LDFLAGS_ALL := $(SAN_FLAGS) $(LDFLAGS)
# Programs export their symbols so that the lock checker's backtraces
# (backtrace_symbols) name the functions, not just offsets.
EXE_LDFLAGS := $(LDFLAGS_ALL) -rdynamic

Q := $(if $(V),,@)

# Every object and program depends on this file, rewritten only when the
# compiler or the flags change.
FLAGS_STAMP := $(BUILD)/.flags
FLAGS_NOW   := $(CC) | $(CFLAGS_ALL) | $(LDFLAGS_ALL) | $(LDLIBS_LIB)

LIB_SRCS := $(sort $(wildcard src/*.c))
LIB_OBJS := $(LIB_SRCS:src/%.c=$(BUILD)/obj/%.o)
HEADERS  := include/reclaim.h $(wildcard src/*.h)
STATIC   := $(BUILD)/libreclaim.a
SONAME   := libreclaim.so.$(VERSION_MAJOR)
SHARED   := $(BUILD)/libreclaim.so.$(VERSION)

# docs/man/NAME.SECTION.scd: one source per page, turned into roff by scdoc.
MAN_SRCS  := $(sort $(wildcard docs/man/*.scd))
MAN_PAGES := $(MAN_SRCS:docs/man/%.scd=$(BUILD)/man/%)

# tests/test_*.c: one cmocka program each. tests/progs/*.c: programs the
# tests run (children in cgroups, example drivers). Both link the static
# library.
TEST_SRCS := $(sort $(wildcard tests/test_*.c))
TESTS     := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
# A specification built twice: test_scope_calls is tests/test_scope.c with
# RCL_NO_INLINE_SCOPES, so the exported scope calls meet the same rules as
# the header's inline ones.
TESTS     += $(BUILD)/tests/test_scope_calls
PROG_SRCS := $(sort $(wildcard tests/progs/*.c))
PROGS     := $(PROG_SRCS:tests/progs/%.c=$(BUILD)/tests/progs/%)
# tests/helpers/: the TEST() macros, the standard fixture and the shared
# shrinkers, linked into every test program. Not the scripted clock: it
# replaces clock_gettime() for the whole program, so only the programs
# that script it link it (SCRIPTED_CLOCK_TESTS below).
SCRIPTED_CLOCK := tests/helpers/scripted_clock.c
TEST_HELPERS := $(filter-out $(SCRIPTED_CLOCK),$(sort $(wildcard tests/helpers/*.c)))
TEST_HELPER_HDRS := $(wildcard tests/helpers/*.h)
# Where a test finds the sources it reads or runs (test_source(),
# tests/helpers/fixture.h), wherever BUILD is.
TEST_CFLAGS := -Itests/helpers -DRCL_TEST_SOURCES='"$(CURDIR)"'

# examples/NAME/*.c: one program per directory.
EXAMPLE_DIRS := $(patsubst %/,%,$(sort $(dir $(wildcard examples/*/*.c))))
EXAMPLES     := $(EXAMPLE_DIRS:examples/%=$(BUILD)/examples/%)
# Examples that need more than the library name a pkg-config package in
# EX_CFLAGS_<name>/EX_LIBS_<name>; where it is missing they are skipped,
# with a message, and the rest builds.
ifeq ($(shell pkg-config --exists fuse3 2>/dev/null && echo yes),yes)
  EX_CFLAGS_fuse-cache := $(shell pkg-config --cflags fuse3)
  EX_LIBS_fuse-cache   := $(shell pkg-config --libs fuse3)
else
  EXAMPLES := $(filter-out $(BUILD)/examples/fuse-cache,$(EXAMPLES))
  $(info examples/fuse-cache skipped: libfuse3-dev not installed (pkg-config fuse3))
endif

# bench/*.c: one program each, linked against the shared library (the way
# users link it) and, for the comparison, the raw allocators.
BENCH_SRCS := $(sort $(wildcard bench/*.c))
BENCHES    := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)

DEMO ?= storage-stack
DEMO_ARGS ?=

.PHONY: all lib tests examples benches check test check-deps check-repo demo bench man install uninstall clean fuzz FORCE
.DELETE_ON_ERROR:

all: lib
lib: $(STATIC) $(BUILD)/libreclaim.so

$(FLAGS_STAMP): FORCE
	$(Q)mkdir -p $(@D)
	$(Q)printf '%s\n' '$(FLAGS_NOW)' | cmp -s - $@ || printf '%s\n' '$(FLAGS_NOW)' > $@

$(BUILD)/obj/%.o: src/%.c $(HEADERS) $(FLAGS_STAMP) | $(BUILD)/obj
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS_ALL) $(LIB_CFLAGS) -c $< -o $@

$(BUILD)/obj/version.o: VERSION
$(BUILD)/obj/version.o: CFLAGS_ALL += -DRCL_BUILD_MAJOR=$(VERSION_MAJOR) \
	-DRCL_BUILD_MINOR=$(VERSION_MINOR) -DRCL_BUILD_PATCH=$(VERSION_PATCH)

$(STATIC): $(LIB_OBJS)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

# -z defs: a symbol the library uses and no library it links defines is an
# error here, not at a program's start. Not under a sanitizer: clang links
# its runtime into programs only, and the program brings it.
# -z nodelete: dlclose() leaves the library loaded. Every thread that used
# it holds its exit handler in thread-specific data, the fork handlers
# are registered for the process, and its own threads may still be
# ending: unmapped, the next of those calls jumps into a hole. Linked
# again when this file changes: the link's options are written here.
$(SHARED): $(LIB_OBJS) src/reclaim.map Makefile
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared $(LDFLAGS_ALL) -Wl,-soname,$(SONAME) -Wl,--version-script=src/reclaim.map \
		-Wl,-z,nodelete $(if $(SAN),,-Wl,-z,defs) -o $@ $(LIB_OBJS) $(LDLIBS_LIB)

$(BUILD)/libreclaim.so: $(SHARED)
	$(Q)ln -sf libreclaim.so.$(VERSION) $(BUILD)/$(SONAME)
	$(Q)ln -sf $(SONAME) $@

$(BUILD)/obj:
	$(Q)mkdir -p $@ $(BUILD)/tests/progs $(BUILD)/examples $(BUILD)/bench

# The page's date is the VERSION file's last commit, so a build is reproducible.
MAN_DATE := $(shell git log -1 --format=%ct -- VERSION 2>/dev/null)
$(BUILD)/man/%: docs/man/%.scd tools/man-tidy.awk
	@$(if $(Q),echo "  SCDOC   $@")
	$(Q)mkdir -p $(@D)
	$(Q)$(if $(MAN_DATE),SOURCE_DATE_EPOCH=$(MAN_DATE)) scdoc < $< > $@.tmp
	$(Q)awk -f tools/man-tidy.awk $@.tmp > $@ && rm -f $@.tmp

$(BUILD)/tests/%: tests/%.c $(TEST_HELPERS) $(TEST_HELPER_HDRS) $(STATIC) $(FLAGS_STAMP) | $(BUILD)/obj
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS_ALL) $(TEST_CFLAGS) $(EXE_LDFLAGS) $(TEST_WRAP) -o $@ $< $(TEST_HELPERS) \
		$(TEST_EXTRA) $(STATIC) -lcmocka $(LDLIBS_LIB) -lm

$(BUILD)/tests/test_scope_calls: tests/test_scope.c $(TEST_HELPERS) $(TEST_HELPER_HDRS) $(STATIC) $(FLAGS_STAMP) | $(BUILD)/obj
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS_ALL) -DRCL_NO_INLINE_SCOPES $(TEST_CFLAGS) $(EXE_LDFLAGS) -o $@ $< $(TEST_HELPERS) $(STATIC) -lcmocka $(LDLIBS_LIB) -lm

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
# The thread-exit test fails the library's thread-specific data stores
# through its wrapper (tests/test_thread_exit.c).
$(BUILD)/tests/test_thread_exit: TEST_WRAP := -Wl,--wrap=pthread_setspecific

# The tests that script the clock the library reads (scripted_clock.h).
SCRIPTED_CLOCK_TESTS := $(addprefix $(BUILD)/tests/,test_budget test_mempool_bulk test_nofail \
	test_reclaim_bound)
$(SCRIPTED_CLOCK_TESTS): TEST_EXTRA := $(SCRIPTED_CLOCK)
$(SCRIPTED_CLOCK_TESTS): $(SCRIPTED_CLOCK)

# test_thread_exit runs a program that loads the shared library with
# dlopen() and unloads it.
$(BUILD)/tests/test_thread_exit: | $(BUILD)/tests/progs/dlclose_thread $(BUILD)/libreclaim.so
$(BUILD)/tests/progs/dlclose_thread: LDLIBS_LIB += -ldl

# The other tests that run a program of the build have it built with them,
# so that making one test alone (make BUILD/tests/test_x) makes all it runs.
# fuse-cache is among EXAMPLES only where libfuse3 is installed; its tests
# skip, saying so, where it is not.
$(BUILD)/tests/test_cgroup_e2e: | $(BUILD)/tests/progs/cgroup_cache $(BUILD)/tests/progs/kv_cache
$(BUILD)/tests/test_block_server: | $(BUILD)/examples/block-server
$(BUILD)/tests/test_cli: | $(EXAMPLES)
$(BUILD)/tests/test_demo: | $(BUILD)/examples/storage-stack $(BUILD)/examples/quickstart
$(BUILD)/tests/test_fuse_e2e: | $(BUILD)/tests/progs/fuse_writer $(filter %/fuse-cache,$(EXAMPLES))

$(BUILD)/tests/progs/%: tests/progs/%.c $(STATIC) $(FLAGS_STAMP) | $(BUILD)/obj
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS_ALL) -Itests $(EXE_LDFLAGS) -o $@ $< $(STATIC) $(LDLIBS_LIB) -lm

.SECONDEXPANSION:
$(BUILD)/examples/%: $$(wildcard examples/%/*.c) $$(wildcard examples/%/*.h) $(STATIC) $(FLAGS_STAMP) | $(BUILD)/obj
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS_ALL) $(EX_CFLAGS_$*) $(EXE_LDFLAGS) -o $@ $(filter %.c,$^) $(STATIC) \
		$(EX_LIBS_$*) $(LDLIBS_LIB) -lm

# The benchmarks call the shared library, as programs do; bench_footprint
# times the trim reclaim runs (rcl__trim_memory()), which the shared
# library does not export, and links the static one.
BENCH_LIB = -L$(BUILD) -Wl,-rpath,'$$ORIGIN/..' -lreclaim
$(BUILD)/bench/bench_footprint: BENCH_LIB = $(STATIC)
$(BUILD)/bench/bench_footprint: $(STATIC)
$(BUILD)/bench/%: bench/%.c $(wildcard bench/*.h) $(BUILD)/libreclaim.so $(FLAGS_STAMP) | $(BUILD)/obj
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS_ALL) -Ibench $(LDFLAGS_ALL) -o $@ $< $(BENCH_LIB) $(LDLIBS_LIB) -lm

tests: $(TESTS) $(PROGS) $(EXAMPLES)
examples: $(EXAMPLES)
benches: $(BENCHES)
man: $(MAN_PAGES)

# Installs what the tests need when it is missing and we are root.
check-deps:
	$(Q)EXTRA_DEPS="$(BACKEND_DEPS)" sh tools/check-deps.sh

# One run of every test in this build. RCL_SUMMARY names a file the run
# adds its counts to (make check reads it for its closing line).
test: check-deps
	$(Q)$(MAKE) --no-print-directory tests
	$(Q)BUILD=$(BUILD) SAN=$(SAN) BACKEND=$(BACKEND) RUN_LABEL=$(RUN_LABEL) sh tools/run-tests.sh $(TESTS)

# The repository's own checks, each counted as one test.
check-repo: lib man $(BUILD)/tests/progs/options_doc
	$(Q)BUILD=$(BUILD) BACKEND=$(BACKEND) MAKE="$(MAKE)" sh tools/run-checks.sh

# A run's name in the summaries: plain, asan or tsan, and the compiler
# when it is clang.
RUN_LABEL = $(or $(SAN),plain)$(if $(findstring clang,$(CC)),-clang)

# Every run goes on after a failure, so the summary covers them all. The
# plain run is made again with the other of gcc and clang (each compiler
# warns of other things and optimises other things away).
CHECK_SUMMARY := $(abspath $(BUILD))/check-summary
OTHER_CC := $(if $(findstring clang,$(CC)),gcc,clang)
check: check-deps
	$(Q)mkdir -p $(BUILD) && rm -f $(CHECK_SUMMARY); st=0; \
	for san in "" asan tsan; do \
		RCL_SUMMARY=$(CHECK_SUMMARY) $(MAKE) --no-print-directory test SAN=$$san || st=1; \
	done; \
	RCL_SUMMARY=$(CHECK_SUMMARY) $(MAKE) --no-print-directory test CC=$(OTHER_CC) \
		BUILD=$(BUILD)-$(OTHER_CC) || st=1; \
	RCL_SUMMARY=$(CHECK_SUMMARY) $(MAKE) --no-print-directory check-repo || st=1; \
	sh tools/summary.sh $(CHECK_SUMMARY) || st=1; exit $$st

demo: $(BUILD)/examples/$(DEMO)
	$(Q)./$(BUILD)/examples/$(DEMO) $(DEMO_ARGS)

# bench_footprint runs the tests' kv_cache program. The run's file records
# the make variables that chose the build, to be run again as it was.
bench: $(BENCHES) $(BUILD)/tests/progs/kv_cache
	$(Q)BACKEND=$(BACKEND) \
	  BENCH_MAKE_ARGS='BUILD=$(BUILD) BACKEND=$(BACKEND) CC=$(CC)$(if $(SAN), SAN=$(SAN))$(if $(DEBUG), DEBUG=$(DEBUG))' \
	  sh tools/run-bench.sh $(BUILD) $(BENCHES)

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

# PREFIX, LIBDIR (Debian: /usr/lib/<multiarch>), INCLUDEDIR and MANDIR say
# where things go on the target system; DESTDIR is prepended to each (a
# staging tree for packages) and never written into reclaim.pc.
install: lib man
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR)/pkgconfig \
		$(DESTDIR)$(MANDIR)/man3 $(DESTDIR)$(MANDIR)/man7
	install -m 644 include/reclaim.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/
	ln -sf libreclaim.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libreclaim.so
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' \
		-e 's|@VERSION@|$(VERSION)|g' -e 's|@LIBS_PRIVATE@|$(strip $(LDLIBS_LIB) $(PC_LIBS_PRIVATE))|g' \
		reclaim.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/reclaim.pc
	for p in $(MAN_PAGES); do \
		install -m 644 $$p $(DESTDIR)$(MANDIR)/man$${p##*.}/; done
	sh tools/man-links.sh | while read -r name page; do \
		ln -sf $$page $(DESTDIR)$(MANDIR)/man3/$$name.3; done

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/reclaim.h $(DESTDIR)$(LIBDIR)/libreclaim.* \
		$(DESTDIR)$(LIBDIR)/pkgconfig/reclaim.pc
	for p in $(notdir $(MAN_PAGES)); do rm -f $(DESTDIR)$(MANDIR)/man$${p##*.}/$$p; done
	sh tools/man-links.sh | while read -r name page; do rm -f $(DESTDIR)$(MANDIR)/man3/$$name.3; done

clean:
	rm -rf build build-*
