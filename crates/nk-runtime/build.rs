//! Embed the git commit in `--version`, as runc does; link the functions a
//! container's life runs first and together (link-order.txt).
fn main() {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output();
    if let Ok(o) = out {
        if o.status.success() {
            let c = String::from_utf8_lossy(&o.stdout).trim().to_string();
            println!("cargo:rustc-env=NK_GIT_COMMIT={c}");
        }
    }
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-changed=../../.git/refs/heads");
    link_order();
}

/// The binary is static and its text is mapped from the file: the kernel
/// maps 64 KiB around every page a process touches (fault-around), so code
/// that `run` needs, scattered over 2.6 MiB, made nearly all of it
/// resident. link-order.txt (written by scripts/link-order.sh from the
/// functions each command really executes) puts those functions first, in
/// the order they first run. The file names symbols; a symbol the build no
/// longer has is skipped, so a stale list costs locality, never
/// correctness. NK_LINK_MAP=FILE also writes the linker's map, which the
/// script reads to name the addresses it traced.
fn link_order() {
    let order = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("link-order.txt");
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rerun-if-env-changed=NK_LINK_MAP");
    if !default_lld() {
        return;
    }
    // RELR: the static PIE's relative relocations, applied at every start,
    // packed into a bitmap: 109 KiB of .rela.dyn, all of it read and
    // resident, become about 2 KiB. Static builds only: the glibc linked
    // in (2.36 or later, as the build host's) applies them itself, where a
    // dynamic binary would need that glibc on every host it runs on.
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if features.split(',').any(|f| f == "crt-static") && glibc_at_least(2, 36) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    if order.exists() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
    if let Some(map) = std::env::var_os("NK_LINK_MAP") {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,-Map={}",
            std::path::Path::new(&map).display()
        );
        // The map must name symbols as the ordering file does, mangled: LLD
        // demangles its map by default, and a demangled Rust name matches no
        // symbol (the ordering then silently skips every Rust function).
        println!("cargo:rustc-link-arg-bins=-Wl,--no-demangle");
    }
}

/// Whether the binary is linked by rustc's own LLD, which reads an ordering
/// file (GNU ld refuses the option): the default for this target from Rust
/// 1.90 on, unless a linker or its features are chosen.
fn default_lld() -> bool {
    if std::env::var("TARGET").ok().as_deref() != Some("x86_64-unknown-linux-gnu") {
        return false;
    }
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.contains("linker")
        || flags.contains("fuse-ld")
        || flags.contains("link-self-contained")
    {
        return false;
    }
    if std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some() {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    version_of(&rustc, "--version") >= (1, 90)
}

/// Whether the glibc that is linked in (the build host's) is at least
/// `major.minor` (`getconf GNU_LIBC_VERSION`: "glibc 2.36").
fn glibc_at_least(major: u32, minor: u32) -> bool {
    version_of("getconf", "GNU_LIBC_VERSION") >= (major, minor)
}

/// The `major.minor` of the second word `program arg` prints ((0, 0) when
/// it cannot be run or read).
fn version_of(program: &str, arg: &str) -> (u32, u32) {
    let Ok(out) = std::process::Command::new(program).arg(arg).output() else {
        return (0, 0);
    };
    let v = String::from_utf8_lossy(&out.stdout);
    let mut nums = v
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split(['.', '-'])
        .map(|n| n.parse::<u32>().unwrap_or(0));
    (nums.next().unwrap_or(0), nums.next().unwrap_or(0))
}
