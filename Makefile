# rankd build. `make` builds the rankd binary; `make test` builds and runs the
# whole suite (unit, integration, crash, fault and fuzz-corpus replay) and
# prints "N passed, N failed". `make SANITIZE=1 test` does the same under
# AddressSanitizer + UndefinedBehaviorSanitizer in build-san/.
# `make fuzz` builds libFuzzer targets with clang into build-fuzz/.

CC      ?= cc
PKGS    := lmdb yaml-0.1 jansson libxxhash openblas lapacke xgboost libmicrohttpd libcurl
WARN    := -Wall -Wextra -Wshadow -Werror -Wno-format-truncation
CSTD    := -std=c11 -D_GNU_SOURCE
OPT     ?= -O2 -g
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS))

ifeq ($(SANITIZE),1)
BUILD   ?= build-san
OPT     := -O1 -g -fno-omit-frame-pointer
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -DRK_NO_ARENA
else
BUILD   ?= build
SANFLAGS :=
endif

CFLAGS_ALL  = $(CSTD) $(OPT) $(WARN) $(SANFLAGS) -Iinclude -Isrc $(PKG_CFLAGS) $(CFLAGS)
LDLIBS_ALL  = $(PKG_LIBS) -lpthread -lm $(LDLIBS)
LDFLAGS_ALL = $(SANFLAGS) $(LDFLAGS)

LIB_SRC   := $(filter-out src/cli/%,$(wildcard src/*/*.c))
CLI_SRC   := $(wildcard src/cli/*.c)
TEST_SRC  := $(wildcard tests/*_test.c)
TEST_SUPPORT := $(filter-out $(TEST_SRC),$(wildcard tests/*.c))
FUZZ_SRC  := $(wildcard fuzz/fuzz_*.c)
BENCH_SRC := $(wildcard bench/*.c)

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
SUP_OBJ   := $(TEST_SUPPORT:%.c=$(BUILD)/obj/%.o)
LIB       := $(BUILD)/librankd.a
BIN       := $(BUILD)/rankd
TESTS     := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
REPLAYS   := $(FUZZ_SRC:fuzz/fuzz_%.c=$(BUILD)/fuzz/replay_%)
BENCHES   := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all test check fuzz clean bench
# Keep objects of chained rules (tests, replays, benches) between runs.
.SECONDARY:
all: $(BIN)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BIN): $(CLI_OBJ) $(LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $(CLI_OBJ) $(LIB) $(LDLIBS_ALL)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(SUP_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $< $(SUP_OBJ) $(LIB) $(LDLIBS_ALL)

# Corpus replay drivers: the libFuzzer entry point linked with a plain main
# that feeds every file of fuzz/corpus/<name>/ to it. Built by any compiler.
$(BUILD)/fuzz/replay_%: $(BUILD)/obj/fuzz/fuzz_%.o $(BUILD)/obj/fuzz/replay_main.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $< $(LIB) $(LDLIBS_ALL) $(shell pkg-config --libs hiredis)

$(BUILD)/obj/bench/%.o: bench/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(shell pkg-config --cflags hiredis) -MMD -MP -c $< -o $@

test: $(BIN) $(TESTS) $(REPLAYS) $(BENCHES)
	@sh scripts/run-tests.sh $(BUILD)

bench: $(BIN) $(BENCHES)

# Everything CI runs: both builds, all tests, short fuzzing. See scripts/check.sh.
check:
	@sh scripts/check.sh

# libFuzzer builds (clang). Run one with e.g.
#   build-fuzz/fuzz_import_csv fuzz/corpus/import_csv -max_total_time=60
FUZZ_BUILD := build-fuzz
FUZZ_CFLAGS := $(CSTD) -O1 -g -Iinclude -Isrc $(PKG_CFLAGS) -DRK_NO_ARENA \
               -fsanitize=fuzzer-no-link,address,undefined
FUZZ_BINS := $(FUZZ_SRC:fuzz/%.c=$(FUZZ_BUILD)/%)
FUZZ_OBJ  := $(LIB_SRC:%.c=$(FUZZ_BUILD)/obj/%.o)
fuzz: $(FUZZ_BINS)
$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@
$(FUZZ_BUILD)/librankd.a: $(FUZZ_OBJ)
	rm -f $@ && ar rcs $@ $^
$(FUZZ_BUILD)/%: fuzz/%.c $(FUZZ_BUILD)/librankd.a
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_BUILD)/librankd.a \
	    $(PKG_LIBS) -lpthread -lm

clean:
	rm -rf build build-san build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
