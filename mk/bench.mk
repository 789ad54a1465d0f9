# Benchmarks of the X12 engine (included from the Makefile).
#
#   make bench        generate bench/{850,856}-{10,100}MB.x12 (reused when made
#                     with the same flags) and print MB/s, ns/segment,
#                     allocations and peak RSS per mode, with the naive-split
#                     and IndexByte-floor baselines of the same machine
#   make bench-rss    also a 1 GB 856: peak RSS at 10 MB vs 1 GB
#   make bench-poll   one poll of 10,000 small files from a real sshd vs
#                     OpenSSH's `sftp -b` of the same files (files/s)
#   make bench-peers  the peers harness (../shared/bench-peers, copied to
#                     /tmp/bench-peers) with edigw-tokenize and edigw-full as
#                     two more columns; BENCH_PEERS_ARGS=--quick for 10 MB only
#
# The corpora use the peers harness's flags and seeds (its gen/corpus.sh
# "main"), so the files are byte-identical to its corpus/. They live in the
# git-ignored bench/ folder. Run on a quiet machine: a concurrent compile
# moves the figures by tens of percent.

BENCH_DIR   ?= bench
BENCH_RUNS  ?= 3
BENCH_SIZES ?= 10MB 100MB
BENCH_FILES  = $(foreach s,$(BENCH_SIZES),$(BENCH_DIR)/850-$(s).x12 $(BENCH_DIR)/856-$(s).x12)
BENCH_EDIGW  = bin/edigw
BENCH_PEERS_SRC  ?= ../shared/bench-peers
BENCH_PEERS_DIR  ?= /tmp/bench-peers
BENCH_PEERS_ARGS ?=

.PHONY: bench bench-tools bench-corpus bench-rss bench-peers

# bin/x12baseline runs the floor and naive baselines in a process of their
# own (standard library only), as the peers harness's runners do.
bench-tools: build
	$(GO) build -o bin/x12baseline ./cmd/x12baseline

# bench_gen TX SIZE: one corpus file, as bench-peers/gen/corpus.sh main writes it.
bench_gen = $(BENCH_EDIGW) x12 gen -reuse -tx $(1) -version 005010 -size $(2) -seed $(1) -tx-per-ic 100 -o $(BENCH_DIR)/$(1)-$(2).x12

bench-corpus: bench-tools
	@mkdir -p $(BENCH_DIR)
	@$(foreach s,$(BENCH_SIZES),$(call bench_gen,850,$(s)) && $(call bench_gen,856,$(s)) && ) true

bench: bench-corpus
	$(BENCH_EDIGW) x12 bench --runs $(BENCH_RUNS) $(BENCH_FILES)

bench-rss: bench-tools
	@mkdir -p $(BENCH_DIR)
	@$(call bench_gen,856,10MB) && $(call bench_gen,856,1GB)
	$(BENCH_EDIGW) x12 bench --runs 1 $(BENCH_DIR)/856-10MB.x12 $(BENCH_DIR)/856-1GB.x12
	@echo "peak RSS: compare the 'peak RSS MB' column of each mode between 856-10MB and 856-1GB"

bench-peers: build
	@test -d $(BENCH_PEERS_SRC) || { echo "bench-peers: $(BENCH_PEERS_SRC) not found (set BENCH_PEERS_SRC=/path/to/bench-peers)" >&2; exit 1; }
	mkdir -p $(BENCH_PEERS_DIR)
	cp -R $(BENCH_PEERS_SRC)/. $(BENCH_PEERS_DIR)/
	chmod -R u+w $(BENCH_PEERS_DIR)
	cd $(BENCH_PEERS_DIR) && ./run-all.sh $(BENCH_PEERS_ARGS) \
	  --peer 'edigw-tokenize | - | $(CURDIR)/$(BENCH_EDIGW) x12 bench --run-mode tokenize {file}' \
	  --peer 'edigw-full | - | $(CURDIR)/$(BENCH_EDIGW) x12 bench --run-mode tree {file}'
	@echo "peers table: $(BENCH_PEERS_DIR)/results/$(if $(findstring --quick,$(BENCH_PEERS_ARGS)),quick,summary).md"

# One poll of 10,000 small files from a real sshd on loopback, against the
# OpenSSH client fetching the same files (BENCH_POLL_FILES to change N).
BENCH_POLL_FILES ?= 10000
.PHONY: bench-poll
bench-poll: build
	$(BENCH_EDIGW) bench poll --files $(BENCH_POLL_FILES)
