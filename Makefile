# dept: PostgreSQL extension (PGXS) + a pure C model layer (src/nn).
#
#   make && make install      build and install the extension and the default model
#   make unittest             C unit tests of src/nn (no server needed)
#   make unittest SANITIZE=1  the same under AddressSanitizer + UBSan
#   make installcheck         pg_regress against a running server
#   make prove                pgTAP files in test/pgtap against a running server

EXTENSION = dept
MODULE_big = dept
DATA = dept--1.0.sql dept--1.0--1.1.sql

NN_SRCS = $(sort $(shell find src/nn -name '*.c'))
NN_HDRS = $(sort $(shell find src/nn -name '*.h'))
PG_SRCS = $(sort $(wildcard src/pg/*.c))
OBJS = $(NN_SRCS:.c=.o) $(PG_SRCS:.c=.o)

REGRESS = embed errors hf_bert hf_t5
REGRESS_OPTS = --load-extension=dept

# OpenBLAS is not linked: src/nn/ops/blas.c loads it at first use (see blas.h);
# only its cblas.h is needed to build.
BLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null)
NN_LIBS = -lutf8proc -lcjson -lm -ldl -lpthread

PG_CPPFLAGS = -Isrc/nn $(BLAS_CFLAGS)
PG_CFLAGS = -Werror
# Calls between the extension's own functions bind at link time: the dynamic
# loader then resolves only the symbols of PostgreSQL and the C libraries when
# a backend loads dept.so (docs/design.md 6, "First call in a new backend").
SHLIB_LINK = $(NN_LIBS) -Wl,-Bsymbolic-functions

# Default model directory: $(pg_config --sharedir)/dept/models/use-lite.
MODEL_SRC = build/model/use-lite

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# src/nn is plain C11 compiled without PostgreSQL's flags or headers.
NN_CC ?= cc
NN_CFLAGS = -std=c11 -D_GNU_SOURCE -O3 -fPIC -g -Wall -Wextra -Werror -Isrc/nn \
	-Wno-unused-parameter $(BLAS_CFLAGS)
ifdef SANITIZE
NN_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
TEST_DIR = build/test-asan
else
TEST_DIR = build/test
endif

src/nn/%.o: src/nn/%.c $(NN_HDRS)
	$(NN_CC) $(NN_CFLAGS) -c -o $@ $<

$(PG_SRCS:.c=.o): $(NN_HDRS) $(wildcard src/pg/*.h)

# ---- model ---------------------------------------------------------------
$(MODEL_SRC)/.verified:
	scripts/fetch-model.sh $(MODEL_SRC)

model: $(MODEL_SRC)/.verified

all: model

install: install-model
install-model: $(MODEL_SRC)/.verified
	$(MKDIR_P) '$(DESTDIR)$(datadir)/dept/models/use-lite'
	$(INSTALL_DATA) $(MODEL_SRC)/model.json $(MODEL_SRC)/vocab.json \
		$(MODEL_SRC)/group1-shard*of7 $(MODEL_SRC)/LICENSE \
		'$(DESTDIR)$(datadir)/dept/models/use-lite/'

# ---- the training command-line tool ---------------------------------------
dept-train: src/cli/dept_train.c $(NN_SRCS) $(NN_HDRS)
	$(NN_CC) $(NN_CFLAGS) -Isrc/nn -o $@ src/cli/dept_train.c $(NN_SRCS) $(NN_LIBS)

all: dept-train
EXTRA_CLEAN = dept-train dept-bench build/test build/test-asan

# ---- C unit tests ----------------------------------------------------------
UNIT_SRCS = $(sort $(wildcard test/nn/test_*.c))
UNIT_BINS = $(patsubst test/nn/%.c,$(TEST_DIR)/%,$(UNIT_SRCS))

# src/nn compiled once per flavour (plain or sanitized) into an archive the
# test binaries link, instead of once per binary.
TEST_NN_OBJS = $(patsubst src/nn/%.c,$(TEST_DIR)/nn/%.o,$(NN_SRCS))

$(TEST_DIR)/nn/%.o: src/nn/%.c $(NN_HDRS)
	@mkdir -p $(dir $@)
	$(NN_CC) $(NN_CFLAGS) -c -o $@ $<

$(TEST_DIR)/libnn.a: $(TEST_NN_OBJS)
	rm -f $@
	ar rcs $@ $^

$(TEST_DIR)/%: test/nn/%.c $(wildcard test/nn/*.h) $(TEST_DIR)/libnn.a
	@mkdir -p $(TEST_DIR)
	$(NN_CC) $(NN_CFLAGS) -Isrc/nn -Itest/nn -o $@ $< $(TEST_DIR)/libnn.a $(NN_LIBS)

unittest: $(UNIT_BINS) $(MODEL_SRC)/.verified
	@DEPT_MODEL_DIR=$(abspath $(MODEL_SRC)) test/run-unit.sh $(UNIT_BINS)

# Load test: 16 pgbench clients for DURATION s (default 60) during training
# and version flips; CI runs it for 20 s.
stresscheck:
	prove -v test/stress/load.sh :: $(or $(DURATION),60)

prove:
	DEPT_FIXTURE_DIR=$(abspath test/fixtures) pg_prove --ext .sql -r test/pgtap

.PHONY: model install-model unittest prove stresscheck

# ---- benchmarks (bench/run) --------------------------------------------------
dept-bench: bench/dept_bench.c $(NN_SRCS) $(NN_HDRS)
	$(NN_CC) $(NN_CFLAGS) -Isrc/nn -o $@ bench/dept_bench.c $(NN_SRCS) $(NN_LIBS)

bench: dept-bench
	bench/run

.PHONY: bench
