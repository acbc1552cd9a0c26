//! The cgroup v2 device filter: cgroup v2 has no devices files, so access to
//! device nodes is decided by an eBPF program of type
//! `BPF_PROG_TYPE_CGROUP_DEVICE` attached to the container's cgroup, as runc
//! and crun do. The program is generated here from the normalised rule list
//! of [`super::devices::Emulator`] and loaded with raw bpf(2) calls: a few
//! dozen fixed instructions do not justify an eBPF crate.
//!
//! The kernel calls the program with `struct bpf_cgroup_dev_ctx { u32
//! access_type; u32 major; u32 minor; }`, where `access_type` is
//! `(access << 16) | type`; returning 1 allows the access, 0 denies it.

use super::devices::{DevType, Emulator, ACC_ALL};
use crate::error::{Error, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub code: u8,
    /// dst register in the low nibble, src register in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

/// Opcodes used by the filter.
pub mod op {
    /// r_dst = *(u32 *)(r_src + off)
    pub const LDX_W: u8 = 0x61;
    /// w_dst &= imm
    pub const AND32_K: u8 = 0x54;
    /// w_dst >>= imm
    pub const RSH32_K: u8 = 0x74;
    /// w_dst = w_src
    pub const MOV32_X: u8 = 0xbc;
    /// w_dst = imm
    pub const MOV32_K: u8 = 0xb4;
    /// if r_dst != imm goto +off
    pub const JNE_K: u8 = 0x55;
    /// if r_dst != r_src goto +off
    pub const JNE_X: u8 = 0x5d;
    /// if r_dst == imm goto +off
    pub const JEQ_K: u8 = 0x15;
    /// return r0
    pub const EXIT: u8 = 0x95;
}

fn ins(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0xf),
        off,
        imm,
    }
}

/// `BPF_DEVCG_DEV_BLOCK` / `BPF_DEVCG_DEV_CHAR`.
fn type_code(t: DevType) -> i32 {
    match t {
        DevType::Block => 1,
        DevType::Char => 2,
        DevType::All => 0,
    }
}

/// Build the filter program for a rule set.
///
/// Registers after the prologue: r2 = device type, r3 = requested access,
/// r4 = major, r5 = minor. Each exception is one block that jumps to the
/// next block when it does not match, and returns the exception's verdict
/// when it does; the last block returns the default. All exceptions share
/// one verdict (the opposite of the default), so their order does not
/// matter. An allow exception must grant all the requested access; a deny
/// exception matches when it shares any of it (the v1 kernel's rules).
pub fn device_filter(e: &Emulator) -> Vec<Insn> {
    let mut p = vec![
        ins(op::LDX_W, 2, 1, 0, 0),
        ins(op::AND32_K, 2, 0, 0, 0xffff),
        ins(op::LDX_W, 3, 1, 0, 0),
        ins(op::RSH32_K, 3, 0, 0, 16),
        ins(op::LDX_W, 4, 1, 4, 0),
        ins(op::LDX_W, 5, 1, 8, 0),
    ];
    let verdict = i32::from(!e.default_allow);
    for r in e.rules().iter().filter(|r| !r.is_all()) {
        // Jumps are written with a placeholder and patched to the block end.
        let mut block: Vec<Insn> = Vec::new();
        if r.typ != DevType::All {
            block.push(ins(op::JNE_K, 2, 0, 0, type_code(r.typ)));
        }
        if r.access != ACC_ALL {
            block.push(ins(op::MOV32_X, 1, 3, 0, 0));
            block.push(ins(op::AND32_K, 1, 0, 0, i32::from(r.access)));
            if r.allow {
                block.push(ins(op::JNE_X, 1, 3, 0, 0));
            } else {
                block.push(ins(op::JEQ_K, 1, 0, 0, 0));
            }
        }
        if let Some(m) = r.major {
            block.push(ins(op::JNE_K, 4, 0, 0, m as i32));
        }
        if let Some(m) = r.minor {
            block.push(ins(op::JNE_K, 5, 0, 0, m as i32));
        }
        block.push(ins(op::MOV32_K, 0, 0, 0, verdict));
        block.push(ins(op::EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, insn) in block.iter_mut().enumerate() {
            if matches!(insn.code, op::JNE_K | op::JNE_X | op::JEQ_K) {
                insn.off = (len - i - 1) as i16;
            }
        }
        p.extend(block);
    }
    p.push(ins(op::MOV32_K, 0, 0, 0, i32::from(e.default_allow)));
    p.push(ins(op::EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;
const BPF_F_REPLACE: u32 = 4;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// bpf(2) with one attribute struct (the one wrapper, in linux::syscall).
fn bpf<T: BpfAttr>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    crate::linux::syscall::bpf(cmd, attr).map_err(std::io::Error::from)
}

use crate::linux::syscall::BpfAttr;
// SAFETY: each is a #[repr(C)] prefix of union bpf_attr for its command,
// built zeroed (Default) before its fields are set.
unsafe impl BpfAttr for ProgLoadAttr {}
// SAFETY: as above.
unsafe impl BpfAttr for AttachAttr {}
// SAFETY: as above.
unsafe impl BpfAttr for QueryAttr {}
// SAFETY: as above.
unsafe impl BpfAttr for GetFdAttr {}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: bpf(2) just returned this new descriptor and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

/// Load the program into the kernel; on a verifier error, the message
/// carries the verifier's log.
pub fn load(insns: &[Insn]) -> Result<OwnedFd> {
    let license = b"Apache-2.0\0";
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    attr.prog_name[..6].copy_from_slice(b"nk_dev");
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(owned(fd)),
        Err(e) => {
            let mut log = vec![0u8; 1 << 16];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let _ = bpf(BPF_PROG_LOAD, &mut attr);
            let end = log.iter().position(|&b| b == 0).unwrap_or(0);
            let text = String::from_utf8_lossy(&log[..end]);
            Err(Error::msg(format!(
                "load the eBPF device filter (bpf BPF_PROG_LOAD): {e}{}",
                if text.trim().is_empty() {
                    String::new()
                } else {
                    format!("; verifier: {}", text.trim())
                }
            )))
        }
    }
}

/// The device programs attached to a cgroup, as descriptors.
fn attached(dir_fd: RawFd) -> Result<Vec<OwnedFd>> {
    let mut ids = [0u32; 64];
    let mut q = QueryAttr {
        target_fd: dir_fd as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut q)
        .map_err(|e| Error::msg(format!("query the cgroup's device programs: {e}")))?;
    let mut out = Vec::new();
    for &id in ids.iter().take(q.prog_cnt as usize) {
        let mut g = GetFdAttr {
            prog_id: id,
            ..Default::default()
        };
        match bpf(BPF_PROG_GET_FD_BY_ID, &mut g) {
            Ok(fd) => out.push(owned(fd)),
            // Detached meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(Error::msg(format!("open device program {id}: {e}"))),
        }
    }
    Ok(out)
}

/// Attach `prog` to the cgroup directory `dir`, replacing the device
/// programs already there (the new one is in place before the old ones go,
/// so the cgroup is never left without a filter).
pub fn attach(dir: &Path, prog: &OwnedFd) -> Result<()> {
    let d = std::fs::File::open(dir).map_err(|e| Error::io("open cgroup", dir, e))?;
    let old = attached(d.as_raw_fd())?;
    let mut a = AttachAttr {
        target_fd: d.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    let replaced = if old.len() == 1 {
        a.attach_flags |= BPF_F_REPLACE;
        a.replace_bpf_fd = old[0].as_raw_fd() as u32;
        match bpf(BPF_PROG_ATTACH, &mut a) {
            Ok(_) => true,
            // Kernels before 5.6 have no BPF_F_REPLACE: attach, then detach.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => false,
            Err(e) => return Err(attach_err(dir, e)),
        }
    } else {
        false
    };
    if !replaced {
        a.attach_flags = BPF_F_ALLOW_MULTI;
        a.replace_bpf_fd = 0;
        bpf(BPF_PROG_ATTACH, &mut a).map_err(|e| attach_err(dir, e))?;
        for p in &old {
            let mut dt = AttachAttr {
                target_fd: d.as_raw_fd() as u32,
                attach_bpf_fd: p.as_raw_fd() as u32,
                attach_type: BPF_CGROUP_DEVICE,
                ..Default::default()
            };
            bpf(BPF_PROG_DETACH, &mut dt).map_err(|e| {
                Error::msg(format!(
                    "detach the previous device filter from {}: {e}",
                    dir.display()
                ))
            })?;
        }
    }
    Ok(())
}

fn attach_err(dir: &Path, e: std::io::Error) -> Error {
    Error::msg(format!(
        "attach the eBPF device filter to {} (bpf BPF_PROG_ATTACH): {e}",
        dir.display()
    ))
}

/// Generate, load and attach the filter for `rules` to cgroup `dir`.
pub fn apply(dir: &Path, rules: &Emulator) -> Result<()> {
    let prog = load(&device_filter(rules))?;
    attach(dir, &prog)
}

#[cfg(test)]
mod tests {
    use super::super::devices::{from_oci, Rule, ACC_MKNOD, ACC_READ, ACC_WRITE};
    use super::*;

    /// A tiny interpreter for the opcodes the filter uses, so the generated
    /// program can be checked without root or a kernel.
    fn run(p: &[Insn], typ: DevType, major: u32, minor: u32, access: u8) -> u64 {
        let ctx = [
            (u32::from(access) << 16) | type_code(typ) as u32,
            major,
            minor,
        ];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        for _ in 0..10_000 {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            let imm64 = i64::from(i.imm) as u64;
            match i.code {
                op::LDX_W => {
                    assert_eq!(src, 1, "loads only from the context");
                    r[dst] = u64::from(ctx[(i.off / 4) as usize]);
                }
                op::AND32_K => r[dst] = u64::from((r[dst] as u32) & (i.imm as u32)),
                op::RSH32_K => r[dst] = u64::from((r[dst] as u32) >> i.imm),
                op::MOV32_X => r[dst] = u64::from(r[src] as u32),
                op::MOV32_K => r[dst] = u64::from(i.imm as u32),
                op::JNE_K if r[dst] != imm64 => pc += i.off as usize,
                op::JNE_X if r[dst] != r[src] => pc += i.off as usize,
                op::JEQ_K if r[dst] == imm64 => pc += i.off as usize,
                op::JNE_K | op::JNE_X | op::JEQ_K => {}
                op::EXIT => return r[0],
                c => panic!("unknown opcode {c:#x}"),
            }
        }
        panic!("program did not exit");
    }

    fn check_against_emulator(json: &str) {
        let list: Vec<oci_spec::runtime::LinuxDeviceCgroup> = serde_json::from_str(json).unwrap();
        let e = Emulator::from_rules(&from_oci(&list).unwrap()).unwrap();
        let p = device_filter(&e);
        for typ in [DevType::Char, DevType::Block] {
            for (major, minor) in [
                (1, 3),
                (1, 5),
                (1, 9),
                (5, 0),
                (136, 0),
                (136, 9),
                (8, 0),
                (10, 200),
            ] {
                for access in 1..=7u8 {
                    assert_eq!(
                        run(&p, typ, major, minor, access) == 1,
                        e.allows(typ, major, minor, access),
                        "{json}: {typ:?} {major}:{minor} access {access}"
                    );
                }
            }
        }
    }

    #[test]
    fn filter_matches_v1_semantics() {
        check_against_emulator(
            r#"[{"allow":false,"access":"rwm"},
                {"allow":true,"type":"c","access":"m"},{"allow":true,"type":"b","access":"m"},
                {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},
                {"allow":true,"type":"c","major":1,"minor":5,"access":"r"},
                {"allow":true,"type":"c","major":136,"access":"rwm"},
                {"allow":true,"type":"b","major":8,"minor":0,"access":"rw"}]"#,
        );
        check_against_emulator(
            r#"[{"allow":true,"access":"rwm"},
                {"allow":false,"type":"c","major":1,"minor":3,"access":"w"},
                {"allow":false,"type":"b","access":"rwm"}]"#,
        );
        check_against_emulator(r#"[{"allow":false,"access":"rwm"}]"#);
        check_against_emulator(r#"[]"#);
    }

    #[test]
    fn program_shape() {
        let e = Emulator::from_rules(&[
            Rule::all(false),
            Rule {
                typ: DevType::Char,
                major: Some(1),
                minor: Some(3),
                access: ACC_READ | ACC_WRITE | ACC_MKNOD,
                allow: true,
            },
        ])
        .unwrap();
        let p = device_filter(&e);
        // prologue 6, block (type, major, minor, mov, exit) 5, default 2.
        assert_eq!(p.len(), 13);
        assert_eq!(p[6], ins(op::JNE_K, 2, 0, 4, 2));
        assert_eq!(p[7], ins(op::JNE_K, 4, 0, 3, 1));
        assert_eq!(p[11], ins(op::MOV32_K, 0, 0, 0, 0));
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 72);
        assert_eq!(std::mem::size_of::<QueryAttr>(), 32);
        let _ = ACC_WRITE;
    }
}
