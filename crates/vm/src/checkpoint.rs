//! `checkpoint` and `restore` of a VM-mode container: CRIU inside the guest,
//! driven by the agent (docs/vm-mode.md, "Checkpoint and restore").
//!
//! QEMU 7.2 cannot take the whole VM's migration stream while the
//! container runs (its rootfs is on the share, and QEMU blocks migration
//! while a 9p share is mounted and always with virtio-fs), so the
//! container alone is checkpointed, with the host's CRIU (crate::criu_kit)
//! in the guest, into the host's `--image-path` attached in the share.
//! The image directory also gets [`VM_IMAGE_RECORD`], the VM's size and
//! settings, so that `restore` knows it is a VM image and starts a VM like
//! the one the container left (through create's own launch path).

use crate::backend::{Created, SizeFlags, VmBackend};
use crate::error::{Error, Result};
use crate::monitor::{self, ClientMsg, ClientReq, RestoreFrom};
use sandbox::container::{CheckpointOptions, CreateOptions, CriuFlags, RestoreOptions};
use sandbox::explain::{self, catalog};
use sandbox::state::Status;
use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

pub use sandbox::container::VM_IMAGE_RECORD;

/// What a VM-mode checkpoint records besides CRIU's images.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Always "vm".
    pub mode: String,
    /// The container that was checkpointed.
    pub id: String,
    pub vcpus: u32,
    pub memory_mib: u32,
    /// The guest kernel release the processes ran on.
    pub kernel: String,
    pub accel: String,
    /// The share the container's VM had ("9p" or "virtio-fs"); a restore
    /// starts its VM as create does, whatever this was.
    pub share: String,
    /// The bundle it was created from.
    pub bundle: PathBuf,
    /// When the checkpoint was taken (RFC 3339).
    pub created: String,
}

impl ImageRecord {
    /// The record of the image directory `dir`, or why it is not a VM image.
    pub fn load(dir: &Path) -> Result<ImageRecord> {
        let p = dir.join(VM_IMAGE_RECORD);
        let raw = std::fs::read(&p).map_err(|e| {
            Error::Msg(format!(
                "{} is not a VM-mode checkpoint: {} cannot be read ({e}); an image from a container-mode checkpoint is restored without --mode=vm",
                dir.display(),
                p.display()
            ))
        })?;
        let r: ImageRecord = serde_json::from_slice(&raw)
            .map_err(|e| Error::Msg(format!("{}: not a VM-mode record: {e}", p.display())))?;
        if r.mode != "vm" {
            return Err(Error::Msg(format!(
                "{}: mode {:?}, expected \"vm\"",
                p.display(),
                r.mode
            )));
        }
        Ok(r)
    }
}

/// Is `dir` a VM-mode checkpoint (it has the record)?
pub fn is_vm_image(dir: &Path) -> bool {
    dir.join(VM_IMAGE_RECORD).exists()
}

/// The flags that cannot apply inside a VM, refused by name.
fn refuse(f: &CriuFlags, extra: &[(bool, &str, &str)]) -> Result<()> {
    let common = [
        (
            f.tcp_established,
            "--tcp-established",
            "the CRIU kit does not carry a network lock set-up for the guest's connections, and a restored VM gets a new network; close the connections or use --mode=container",
        ),
        (
            f.lazy_pages,
            "--lazy-pages",
            "nk-runtime does not run CRIU's lazy-pages daemon and page server, in a guest or on a host",
        ),
    ];
    for (on, flag, why) in common.iter().chain(extra) {
        if *on {
            return Err(Error::Msg(format!(
                "{flag} is not supported in VM mode: {why}"
            )));
        }
    }
    Ok(())
}

fn options(f: &CriuFlags) -> vm_protocol::CriuOptions {
    vm_protocol::CriuOptions {
        ext_unix_sk: f.ext_unix_sk,
        shell_job: f.shell_job,
        file_locks: f.file_locks,
        manage_cgroups_mode: f.manage_cgroups_mode.clone(),
        empty_ns: f.empty_ns.clone(),
        auto_dedup: f.auto_dedup,
    }
}

/// The CRIU kit for the VM image's kernel, narrated.
fn kit(criu: Option<&Path>) -> Result<PathBuf> {
    let k = crate::image::find_kernel()?;
    let kit = crate::criu_kit::ensure(criu, &k.modules_root, &k.version)?;
    explain::step(&catalog::VM_CRIU_KIT, || match kit.built_ms {
        Some(ms) => format!("{} (assembled now, in {ms} ms)", kit.dir.display()),
        None => format!("{} (cached)", kit.dir.display()),
    });
    Ok(kit.dir)
}

/// Copy CRIU's log out of the image directory for --work-path, never
/// through a symlink: the guest wrote that directory.
fn copy_log(src: &Path, dst_dir: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(src);
    let (Some(name), Ok(mut from)) = (src.file_name(), opened) else {
        return;
    };
    if !from.metadata().is_ok_and(|m| m.is_file()) {
        return;
    }
    let _ = std::fs::create_dir_all(dst_dir);
    if let Ok(mut to) = std::fs::File::create(dst_dir.join(name)) {
        let _ = std::io::copy(&mut from, &mut to);
    }
}

/// A detached copy of a directory (open_tree), for the monitor to attach.
fn tree(dir: &Path) -> Result<OwnedFd> {
    use sandbox::linux::syscall::{open_tree, OPEN_TREE_CLONE};
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Msg(format!("{}: a NUL in the path", dir.display())))?;
    open_tree(None, &c, OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint)
        .map_err(|e| Error::sys(format!("open_tree({}, OPEN_TREE_CLONE)", dir.display()), e))
}

impl VmBackend {
    /// `checkpoint` of a VM-mode container: CRIU dumps it in the guest into
    /// the image directory; unless --leave-running the VM stops and the
    /// container is deleted (runc's semantics).
    pub fn checkpoint(&self, id: &str, o: &CheckpointOptions) -> Result<()> {
        let (st, status) = self.rt.load(id)?;
        let rec = st.mode.vm().cloned().unwrap_or_default();
        if let Some(pod) = &rec.pod {
            return Err(Error::Msg(format!(
                "checkpoint of {id}: it runs in the VM of pod container {pod}, and only a VM's own container can be checkpointed"
            )));
        }
        let parent = o.parent_path.as_deref().is_some_and(|p| !p.is_empty());
        refuse(
            &o.flags,
            &[
                (o.pre_dump, "--pre-dump", "the image directory is all the guest sees of the host, so the parent images a later dump names with --parent-path (outside it) are out of its reach; checkpoint in one step"),
                (parent, "--parent-path", "the guest sees only the image directory, not a parent beside it; checkpoint in one step"),
                (o.page_server.as_deref().is_some_and(|s| !s.is_empty()), "--page-server", "CRIU runs in the guest, whose network does not reach a page server on the host's side"),
            ],
        )?;
        if status != Status::Running && status != Status::Paused {
            return Err(Error::Msg(format!(
                "container {id}: Container cannot be checkpointed in {status} state"
            )));
        }
        let dir = self.rt.store.dir(id);
        if self.rt.config_process(id).ok().and_then(|p| p.terminal()) == Some(true) {
            return Err(Error::Msg(format!(
                "checkpoint of {id}: process.terminal is true, and a VM-mode restore cannot give the restored processes their terminal back (it is the guest's); checkpoint containers without a terminal"
            )));
        }
        let kit = kit(o.flags.criu.as_deref())?;
        let img = &o.flags.image_path;
        std::fs::DirBuilder::new()
            .recursive(true)
            .create(img)
            .map_err(|e| Error::io("create", img, e))?;
        let share = std::fs::read(dir.join(monitor::CONFIG))
            .ok()
            .and_then(|raw| serde_json::from_slice::<monitor::MonitorConfig>(&raw).ok())
            .map(|c| {
                if c.template.is_some() {
                    "9p".to_string()
                } else {
                    crate::backend::share_name(&c.share_fs).to_string()
                }
            })
            .unwrap_or_default();
        let trees = [tree(img)?, tree(&kit)?];
        let c = monitor::Client::connect(&dir)?;
        let t0 = std::time::Instant::now();
        c.send(
            &ClientReq::Checkpoint {
                leave_running: o.leave_running,
                options: options(&o.flags),
            },
            &trees.iter().map(|t| t.as_raw_fd()).collect::<Vec<_>>(),
        )?;
        drop(trees);
        let r = c.recv();
        let ms = t0.elapsed().as_millis();
        let log = img.join("dump.log");
        if let Some(w) = &o.flags.work_path {
            // CRIU wrote its log beside the images (all the guest sees).
            copy_log(&log, w);
        }
        let failed = match r? {
            ClientMsg::Ok(_) => None,
            ClientMsg::Err(e) => Some(e),
            ClientMsg::Exited(s) => Some(format!("the VM monitor answered with exit status {s}")),
        };
        if let Some(e) = failed {
            // The guest's error names the container and CRIU's log by its
            // guest path: say where the log is here.
            return Err(Error::Msg(format!(
                "in the VM of container {id}: {e}\n(CRIU's log on this host: {})",
                log.display()
            )));
        }
        explain::step(&catalog::VM_CHECKPOINT, || {
            format!(
                "CRIU in the guest dumped {id} into {} in {ms} ms{}",
                img.display(),
                if o.leave_running {
                    "; it goes on running"
                } else {
                    "; the VM stops and the container is deleted"
                }
            )
        });
        let record = ImageRecord {
            mode: "vm".into(),
            id: id.to_string(),
            vcpus: rec.vcpus,
            memory_mib: rec.memory_mib,
            kernel: rec.kernel.clone(),
            accel: rec.accel.clone(),
            share,
            bundle: st.bundle.clone(),
            created: sandbox::time::now_rfc3339_nanos(),
        };
        sandbox::files::replace(
            &img.join(VM_IMAGE_RECORD),
            &serde_json::to_vec_pretty(&record).unwrap_or_default(),
            0o600,
        )?;
        if !o.leave_running {
            // CRIU killed the container: its monitor forwards the output
            // the container wrote before the dump, then stops the VM and
            // exits. Give it that time, then delete (which stops whatever
            // is left).
            crate::backend::wait_monitor(&st, 10_000);
            self.delete(id, true)?;
        }
        Ok(())
    }

    /// `restore` of a VM image: a new VM of the recorded size, started as
    /// create starts one, whose agent has CRIU restore the container. It
    /// is running when this returns; the monitor stands for it.
    pub fn restore(&self, o: &RestoreOptions) -> Result<Created> {
        let f = &o.flags;
        refuse(f, &[])?;
        let rec = ImageRecord::load(&f.image_path)?;
        let kit = kit(f.criu.as_deref())?;
        let v = VmBackend {
            rt: self.rt.clone(),
            size: SizeFlags {
                vcpus: self.size.vcpus.or(Some(rec.vcpus).filter(|n| *n > 0)),
                memory_mib: self
                    .size
                    .memory_mib
                    .or(Some(rec.memory_mib).filter(|n| *n > 0)),
            },
            boot: self.boot,
        };
        let co = CreateOptions {
            id: o.id.clone(),
            bundle: o.bundle.clone(),
            pid_file: o.pid_file.clone(),
            console_socket: o.console_socket.clone(),
            ..Default::default()
        };
        let from = RestoreFrom {
            images: f.image_path.clone(),
            kit,
            options: options(f),
        };
        let created = v.create_from(&co, Some(from))?;
        if let Some(w) = &f.work_path {
            copy_log(&f.image_path.join("restore.log"), w);
        }
        Ok(created)
    }
}
