# nano-sandbox: build, run, test, benchmark and install nk-runtime.
#
#   make run      build, make the default busybox bundle, run a container on it
#   make explain  the same container, every step narrated (nk-runtime -E)
#   make test     install what the tests need, then run every test
#   make test-under-load   the integration suite 3 times in a row, cores busy
#   make soak     5 minutes of random container operations, then a leak check
#   make bench    nk-runtime side by side with runc and crun (build/bench/;
#                 QUICK=1 for a short pass, UPDATE_DOCS=1 to refresh docs/)
#   make bench-smoke  a short pass of every bench section, checked
#   make install  PREFIX=/usr/local DESTDIR=

PREFIX ?= /usr/local
DESTDIR ?=
CARGO ?= cargo
BUILD := build
BUNDLE := $(BUILD)/bundle
# The shipped binary is static (glibc and libseccomp linked in): it starts
# faster without the dynamic loader and can be copied into a VM guest as is.
TARGET := x86_64-unknown-linux-gnu
RT := target/$(TARGET)/release/nk-runtime
RT_DEBUG := target/debug/nk-runtime
# The crash-safety tests' build: NK_FAULT kills it before a chosen step
# (feature fault-injection). Its own profile and directory: never shipped.
FAULT_RT := target/fault-injection/nk-runtime
STATIC_ENV := RUSTFLAGS="-C target-feature=+crt-static" LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=/usr/lib/x86_64-linux-gnu

.PHONY: all build build-deps agent debug fault-runtime bundle run explain test test-deps unit integration test-under-load soak lint bench bench-smoke install install-check clean

all: build

build: build-deps
	$(STATIC_ENV) $(CARGO) build --release --bin nk-runtime --target $(TARGET)

build-deps:
	scripts/build-deps.sh

# VM mode: the static guest agent (and a static nk-runtime for the guest tests).
agent: build
	scripts/build-agent.sh

debug: build-deps
	$(CARGO) build --bin nk-runtime

fault-runtime: build-deps
	$(CARGO) build -p nk-runtime --profile fault-injection --features fault-injection

bundle: build
	scripts/mk-bundle.sh $(RT) $(BUNDLE)

run: bundle
	$(RT) --root $(BUILD)/state run --bundle $(BUNDLE) demo-$$$$

explain: bundle
	$(RT) --root $(BUILD)/state -E run --bundle $(BUNDLE) demo-$$$$

test-deps:
	scripts/test-deps.sh

unit:
	$(CARGO) test --workspace --lib --bins
	$(CARGO) test -p sandbox --lib --features fault-injection explain::fault

# The runtime under test is the release binary (NK_RUNTIME); the test
# programs themselves are built in the dev profile: in the release profile
# (fat LTO, one codegen unit) their 56 binaries took 8.5 minutes to build on
# a fresh machine, in the dev profile 1 min 16 s.
integration: build agent fault-runtime
	scripts/mk-rootfs.sh $(BUILD)/rootfs
	NK_RUNTIME=$(CURDIR)/$(RT) NK_FAULT_RUNTIME=$(CURDIR)/$(FAULT_RT) NK_TEST_ROOTFS=$(CURDIR)/$(BUILD)/rootfs \
		$(CARGO) test -p nk-tests -- --test-threads=4

# Not part of `make test`: the suite three times while stress-ng loads every
# core, and the soak (NK_SOAK_SECS, NK_SOAK_WORKERS).
test-under-load: test-deps build agent fault-runtime
	scripts/test-under-load.sh 3

soak: test-deps build fault-runtime
	scripts/mk-rootfs.sh $(BUILD)/rootfs
	NK_RUNTIME=$(CURDIR)/$(RT) NK_TEST_ROOTFS=$(CURDIR)/$(BUILD)/rootfs \
		$(CARGO) test -p nk-tests --release --test soak -- --ignored --nocapture

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p sandbox -p nk-runtime --features fault-injection -- -D warnings

# make install into a scratch DESTDIR, then run a container from the installed bundle.
install-check: build
	rm -rf $(BUILD)/install-check
	$(MAKE) --no-print-directory install DESTDIR=$(CURDIR)/$(BUILD)/install-check PREFIX=/usr/local
	test -x $(BUILD)/install-check/usr/local/bin/nk-runtime
	test -L $(BUILD)/install-check/usr/local/bin/nk-runtime-vm
	test -f $(BUILD)/install-check/usr/local/share/nano-sandbox/bundle/config.json
	test -x $(BUILD)/install-check/usr/local/share/nano-sandbox/bundle/rootfs/bin/busybox
	$(BUILD)/install-check/usr/local/bin/nk-runtime --root $(BUILD)/install-check/state run \
		--bundle $(BUILD)/install-check/usr/local/share/nano-sandbox/bundle install-check-$$$$ | grep 'Hello from nano-sandbox' >/dev/null
	rm -rf $(BUILD)/install-check
	@echo "install-check: ok"

test: build-deps test-deps lint unit integration install-check

bench: build
	bench/run.sh

bench-smoke: build
	bench/smoke.sh

install: build agent bundle
	install -D -m 0755 $(RT) $(DESTDIR)$(PREFIX)/bin/nk-runtime
	ln -sf nk-runtime $(DESTDIR)$(PREFIX)/bin/nk-runtime-vm
	install -D -m 0755 target/x86_64-unknown-linux-gnu/release/nk-agent $(DESTDIR)$(PREFIX)/lib/nano-sandbox/nk-agent
	mkdir -p $(DESTDIR)$(PREFIX)/share/nano-sandbox
	rm -rf $(DESTDIR)$(PREFIX)/share/nano-sandbox/bundle
	cp -a $(BUNDLE) $(DESTDIR)$(PREFIX)/share/nano-sandbox/bundle

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
