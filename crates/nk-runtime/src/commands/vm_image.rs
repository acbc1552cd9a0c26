//! `vm-image build|status|clean`: the VM-mode guest image (uncompressed
//! kernel, initramfs with the agent, the accelerator probe, the default
//! size's template snapshot), cached under
//! /var/lib/nano-sandbox/vm (NK_VM_CACHE).

use crate::cli::VmImageArgs;
use crate::report::Globals;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

static LAST_PCT: AtomicU64 = AtomicU64::new(u64::MAX);

fn progress(p: vm::image::Progress) {
    let tty = sandbox::linux::console::is_tty(sandbox::linux::console::stdio(2));
    match p {
        vm::image::Progress::Step(s) => eprintln!("{s} ..."),
        vm::image::Progress::Done(s) => {
            if tty {
                eprint!("\r\x1b[K");
            }
            eprintln!("  done: {s}");
            LAST_PCT.store(u64::MAX, Ordering::Relaxed);
        }
        vm::image::Progress::Bytes(done, total) => {
            let pct = (done * 100 / total.max(1)).min(100);
            let step = if tty { 1 } else { 25 };
            let last = LAST_PCT.load(Ordering::Relaxed);
            if last == u64::MAX || pct >= last.saturating_add(step) {
                LAST_PCT.store(pct, Ordering::Relaxed);
                if tty {
                    eprint!("\r  {pct:3}% ({} of {} MB)", done >> 20, total >> 20);
                    let _ = std::io::stderr().flush();
                } else {
                    eprintln!("  {pct}% ({} of {} MB)", done >> 20, total >> 20);
                }
            }
        }
    }
}

#[inline(never)] // its own frame, not a share of dispatch's (see there)
pub fn run(_g: &Globals, a: VmImageArgs) -> anyhow::Result<i32> {
    match a.action.as_str() {
        "build" => {
            let t0 = std::time::Instant::now();
            let qemu = vm::qemu::find_qemu()?;
            let img = vm::image::ensure(&progress)?;
            eprintln!("choosing the accelerator ...");
            let accel = vm::qemu::choose_accel(&img, &|m| eprintln!("  {m}"));
            let why = vm::qemu::cached_accel(&vm::image::cache_dir())
                .map(|r| r.reason)
                .unwrap_or_else(|| "from NK_VM_ACCEL".into());
            println!(
                "kernel     {} ({})",
                img.kernel_version,
                img.vmlinux.display()
            );
            println!("initramfs  {}", img.initramfs.display());
            println!(
                "agent      {} (sha256 {}...)",
                img.agent.display(),
                img.agent_hash
            );
            println!("qemu       {}", qemu.display());
            println!("accel      {} ({why})", accel.as_str());
            // The default size's template, so that the first create
            // restores rather than boots (others are built on first use).
            match vm::backend::ensure_default_template(&img, accel, &|m| eprintln!("{m} ...")) {
                Ok(vm::template::Ensured::Cached(t)) => {
                    println!("template   {} (cached)", t.dir.display())
                }
                Ok(vm::template::Ensured::Built(t, ms)) => println!(
                    "template   {} (built: the guest booted in {ms} ms)",
                    t.dir.display()
                ),
                Err(e) => println!("template   none: {e} (VMs boot cold)"),
            }
            println!("ready in {:.1} s", t0.elapsed().as_secs_f64());
            Ok(0)
        }
        "status" => {
            println!("{}", serde_json::to_string_pretty(&vm::image::status())?);
            Ok(0)
        }
        "clean" => {
            let freed = vm::image::clean()?;
            println!(
                "removed the VM image cache in {} ({} MB)",
                vm::image::cache_dir().display(),
                freed >> 20
            );
            Ok(0)
        }
        other => anyhow::bail!("vm-image {other:?}: use build, status or clean"),
    }
}
