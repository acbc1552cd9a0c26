# nano-sandbox: build, run, test, benchmark and install nk-runtime.
#
#   make run      build, make the default busybox bundle, run a container on it
#   make test     install what the tests need, then run every test
#   make bench    nk-runtime side by side with runc and crun
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
STATIC_ENV := RUSTFLAGS="-C target-feature=+crt-static" LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=/usr/lib/x86_64-linux-gnu

.PHONY: all build build-deps debug bundle run test test-deps unit integration lint bench install clean

all: build

build: build-deps
	$(STATIC_ENV) $(CARGO) build --release --bin nk-runtime --target $(TARGET)

build-deps:
	scripts/build-deps.sh

debug: build-deps
	$(CARGO) build --bin nk-runtime

bundle: build
	scripts/mk-bundle.sh $(RT) $(BUNDLE)

run: bundle
	$(RT) --root $(BUILD)/state run --bundle $(BUNDLE) demo-$$$$

test-deps:
	scripts/test-deps.sh

unit:
	$(CARGO) test --workspace --lib --bins

integration: build
	scripts/mk-rootfs.sh $(BUILD)/rootfs
	NK_RUNTIME=$(CURDIR)/$(RT) NK_TEST_ROOTFS=$(CURDIR)/$(BUILD)/rootfs \
		$(CARGO) test -p nk-tests --release -- --test-threads=4

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: build-deps test-deps lint unit integration

bench: build
	bench/run.sh

install: build bundle
	install -D -m 0755 $(RT) $(DESTDIR)$(PREFIX)/bin/nk-runtime
	ln -sf nk-runtime $(DESTDIR)$(PREFIX)/bin/nk-runtime-vm
	mkdir -p $(DESTDIR)$(PREFIX)/share/nano-sandbox
	rm -rf $(DESTDIR)$(PREFIX)/share/nano-sandbox/bundle
	cp -a $(BUNDLE) $(DESTDIR)$(PREFIX)/share/nano-sandbox/bundle

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
