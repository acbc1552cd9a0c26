//! CRIU's RPC messages (`criu_req`, `criu_resp` of CRIU's rpc.proto), as
//! protobuf wire bytes. Only the fields the runtime sends or reads are
//! here; an unknown field in a response is skipped, as protobuf requires.
//!
//! The encoding is protobuf's: each field is a varint key (field number
//! << 3 | wire type) followed by a varint (wire type 0: ints, bools, enums)
//! or a length and bytes (wire type 2: strings and nested messages). That
//! is small enough to write here, where a protobuf crate would add its
//! runtime and a code generator for two messages.

/// criu_req_type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReqType {
    Dump,
    Restore,
    PreDump,
    Notify,
    FeatureCheck,
    Version,
    /// A type this module does not name (its number).
    Other(u64),
}

impl ReqType {
    fn number(self) -> u64 {
        match self {
            ReqType::Dump => 1,
            ReqType::Restore => 2,
            ReqType::PreDump => 4,
            ReqType::Notify => 6,
            ReqType::FeatureCheck => 9,
            ReqType::Version => 10,
            ReqType::Other(n) => n,
        }
    }

    fn from_number(n: u64) -> ReqType {
        match n {
            1 => ReqType::Dump,
            2 => ReqType::Restore,
            4 => ReqType::PreDump,
            6 => ReqType::Notify,
            9 => ReqType::FeatureCheck,
            10 => ReqType::Version,
            n => ReqType::Other(n),
        }
    }

    /// The name CRIU's proto gives the type (as runc prints it).
    pub fn name(self) -> String {
        match self {
            ReqType::Dump => "DUMP".into(),
            ReqType::Restore => "RESTORE".into(),
            ReqType::PreDump => "PRE_DUMP".into(),
            ReqType::Notify => "NOTIFY".into(),
            ReqType::FeatureCheck => "FEATURE_CHECK".into(),
            ReqType::Version => "VERSION".into(),
            ReqType::Other(n) => format!("type {n}"),
        }
    }
}

/// criu_cg_mode: how CRIU treats the tasks' cgroups (`--manage-cgroups-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgMode {
    Ignore = 0,
    Soft = 3,
    Full = 4,
    Strict = 5,
}

impl CgMode {
    /// runc's words for the modes.
    pub fn parse(s: &str) -> Option<CgMode> {
        Some(match s {
            "soft" => CgMode::Soft,
            "full" => CgMode::Full,
            "strict" => CgMode::Strict,
            "ignore" => CgMode::Ignore,
            _ => return None,
        })
    }
}

/// criu_opts: the options of a dump or a restore. A `false` or `None` is
/// left out of the message (CRIU's default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opts {
    pub images_dir_fd: i32,
    pub pid: Option<i32>,
    pub leave_running: bool,
    pub ext_unix_sk: bool,
    pub tcp_established: bool,
    pub evasive_devices: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub log_level: Option<i32>,
    pub log_file: Option<String>,
    /// The page server to send pages to: address and port.
    pub page_server: Option<(String, i32)>,
    pub notify_scripts: bool,
    pub root: Option<String>,
    pub parent_img: Option<String>,
    pub track_mem: bool,
    pub auto_dedup: bool,
    pub work_dir_fd: Option<i32>,
    /// External mounts: key and value.
    pub ext_mnt: Vec<(String, String)>,
    pub manage_cgroups: bool,
    /// Where each controller's (None: every controller's) tree goes.
    pub cg_root: Vec<(Option<String>, String)>,
    pub rst_sibling: bool,
    /// Descriptors of the caller that stand for a resource named by key.
    pub inherit_fd: Vec<(String, i32)>,
    pub manage_cgroups_mode: Option<CgMode>,
    pub external: Vec<String>,
    pub empty_ns: u32,
    pub freeze_cgroup: Option<String>,
    pub lazy_pages: bool,
    pub status_fd: Option<i32>,
    pub orphan_pts_master: bool,
    pub config_file: Option<String>,
    pub lsm_profile: Option<String>,
    pub lsm_mount_context: Option<String>,
}

/// criu_features: what a FEATURE_CHECK asks about and what it answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    pub mem_track: Option<bool>,
    pub lazy_pages: Option<bool>,
}

/// criu_req.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Req {
    pub typ: ReqType,
    pub opts: Option<Opts>,
    pub notify_success: Option<bool>,
    pub features: Option<Features>,
}

impl Req {
    /// A request of `typ` with `opts`.
    pub fn new(typ: ReqType, opts: Option<Opts>) -> Req {
        Req {
            typ,
            opts,
            notify_success: None,
            features: None,
        }
    }

    /// The answer to a notification.
    pub fn notify_ack(success: bool) -> Req {
        Req {
            typ: ReqType::Notify,
            opts: None,
            notify_success: Some(success),
            features: None,
        }
    }
}

/// criu_notify: an action-script point CRIU reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notify {
    pub script: String,
    pub pid: i32,
}

/// criu_version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Version {
    pub major: i32,
    pub minor: i32,
    pub sublevel: i32,
    pub gitid: Option<String>,
}

impl Version {
    /// runc's number for a version: major*10000 + minor*100 + sublevel.
    pub fn number(&self) -> i64 {
        self.major as i64 * 10000 + self.minor as i64 * 100 + self.sublevel as i64
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if self.sublevel != 0 {
            write!(f, ".{}", self.sublevel)?;
        }
        Ok(())
    }
}

/// criu_resp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resp {
    pub typ: ReqType,
    pub success: bool,
    /// restore.pid: the restored root task.
    pub restored_pid: Option<i32>,
    pub notify: Option<Notify>,
    pub cr_errno: Option<i32>,
    pub cr_errmsg: Option<String>,
    pub features: Option<Features>,
    pub version: Option<Version>,
}

/// A response that is not valid protobuf, or lacks a required field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed CRIU response: {0}")]
pub struct DecodeError(pub &'static str);

// ---- encoding ----

struct Enc(Vec<u8>);

impl Enc {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn key(&mut self, field: u32, wire: u8) {
        self.varint(((field as u64) << 3) | wire as u64);
    }
    /// int32 (negative values take ten bytes, sign-extended), uint32, enums.
    fn int(&mut self, field: u32, v: i64) {
        self.key(field, 0);
        self.varint(v as u64);
    }
    fn flag(&mut self, field: u32, v: bool) {
        if v {
            self.int(field, 1);
        }
    }
    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn string(&mut self, field: u32, s: &str) {
        self.bytes(field, s.as_bytes());
    }
    fn opt_string(&mut self, field: u32, s: &Option<String>) {
        if let Some(s) = s {
            self.string(field, s);
        }
    }
    fn message(&mut self, field: u32, build: impl FnOnce(&mut Enc)) {
        let mut inner = Enc(Vec::new());
        build(&mut inner);
        self.bytes(field, &inner.0);
    }
}

fn encode_opts(e: &mut Enc, o: &Opts) {
    e.int(1, o.images_dir_fd as i64);
    if let Some(p) = o.pid {
        e.int(2, p as i64);
    }
    e.flag(3, o.leave_running);
    e.flag(4, o.ext_unix_sk);
    e.flag(5, o.tcp_established);
    e.flag(6, o.evasive_devices);
    e.flag(7, o.shell_job);
    e.flag(8, o.file_locks);
    if let Some(l) = o.log_level {
        e.int(9, l as i64);
    }
    e.opt_string(10, &o.log_file);
    if let Some((addr, port)) = &o.page_server {
        e.message(11, |m| {
            m.string(1, addr);
            m.int(2, *port as i64);
        });
    }
    e.flag(12, o.notify_scripts);
    e.opt_string(13, &o.root);
    e.opt_string(14, &o.parent_img);
    e.flag(15, o.track_mem);
    e.flag(16, o.auto_dedup);
    if let Some(fd) = o.work_dir_fd {
        e.int(17, fd as i64);
    }
    for (k, v) in &o.ext_mnt {
        e.message(23, |m| {
            m.string(1, k);
            m.string(2, v);
        });
    }
    e.flag(24, o.manage_cgroups);
    for (ctrl, path) in &o.cg_root {
        e.message(25, |m| {
            m.opt_string(1, ctrl);
            m.string(2, path);
        });
    }
    e.flag(26, o.rst_sibling);
    for (k, fd) in &o.inherit_fd {
        e.message(27, |m| {
            m.string(1, k);
            m.int(2, *fd as i64);
        });
    }
    if let Some(mode) = o.manage_cgroups_mode {
        e.int(34, mode as i64);
    }
    for x in &o.external {
        e.string(37, x);
    }
    if o.empty_ns != 0 {
        e.int(38, o.empty_ns as i64);
    }
    e.opt_string(44, &o.freeze_cgroup);
    e.flag(48, o.lazy_pages);
    if let Some(fd) = o.status_fd {
        e.int(49, fd as i64);
    }
    e.flag(50, o.orphan_pts_master);
    e.opt_string(51, &o.config_file);
    e.opt_string(53, &o.lsm_profile);
    e.opt_string(63, &o.lsm_mount_context);
}

fn encode_features(e: &mut Enc, field: u32, f: &Features) {
    e.message(field, |m| {
        if let Some(v) = f.mem_track {
            m.int(1, v as i64);
        }
        if let Some(v) = f.lazy_pages {
            m.int(2, v as i64);
        }
    });
}

impl Req {
    /// The request as protobuf wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc(Vec::new());
        e.int(1, self.typ.number() as i64);
        if let Some(o) = &self.opts {
            e.message(2, |m| encode_opts(m, o));
        }
        if let Some(s) = self.notify_success {
            e.int(3, s as i64);
        }
        if let Some(f) = &self.features {
            encode_features(&mut e, 5, f);
        }
        e.0
    }
}

// ---- decoding ----

enum Val<'a> {
    Int(u64),
    Bytes(&'a [u8]),
}

struct Dec<'a>(&'a [u8]);

impl<'a> Dec<'a> {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self
                .0
                .split_first()
                .ok_or(DecodeError("truncated varint"))?;
            self.0 = rest;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("field runs past the end"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    /// The next field, or None at the end. Fixed-width fields (no CRIU
    /// response field uses them) are skipped as unknown.
    fn field(&mut self) -> Result<Option<(u64, Option<Val<'a>>)>, DecodeError> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let (num, wire) = (key >> 3, key & 7);
        let v = match wire {
            0 => Some(Val::Int(self.varint()?)),
            2 => {
                let n = self.varint()? as usize;
                Some(Val::Bytes(self.take(n)?))
            }
            1 => {
                self.take(8)?;
                None
            }
            5 => {
                self.take(4)?;
                None
            }
            _ => return Err(DecodeError("unknown wire type")),
        };
        Ok(Some((num, v)))
    }
}

fn each<'a>(
    buf: &'a [u8],
    mut f: impl FnMut(u64, Val<'a>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let mut d = Dec(buf);
    while let Some((num, v)) = d.field()? {
        if let Some(v) = v {
            f(num, v)?;
        }
    }
    Ok(())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn decode_features(b: &[u8]) -> Result<Features, DecodeError> {
    let mut f = Features::default();
    each(b, |n, v| {
        match (n, v) {
            (1, Val::Int(x)) => f.mem_track = Some(x != 0),
            (2, Val::Int(x)) => f.lazy_pages = Some(x != 0),
            _ => {}
        }
        Ok(())
    })?;
    Ok(f)
}

impl Resp {
    /// Parse a response datagram.
    pub fn decode(buf: &[u8]) -> Result<Resp, DecodeError> {
        let mut typ = None;
        let mut success = None;
        let mut r = Resp {
            typ: ReqType::Other(0),
            success: false,
            restored_pid: None,
            notify: None,
            cr_errno: None,
            cr_errmsg: None,
            features: None,
            version: None,
        };
        each(buf, |n, v| {
            match (n, v) {
                (1, Val::Int(x)) => typ = Some(ReqType::from_number(x)),
                (2, Val::Int(x)) => success = Some(x != 0),
                (4, Val::Bytes(b)) => each(b, |n, v| {
                    if let (1, Val::Int(x)) = (n, v) {
                        r.restored_pid = Some(x as i32);
                    }
                    Ok(())
                })?,
                (5, Val::Bytes(b)) => {
                    let mut nt = Notify::default();
                    each(b, |n, v| {
                        match (n, v) {
                            (1, Val::Bytes(s)) => nt.script = text(s),
                            (2, Val::Int(x)) => nt.pid = x as i32,
                            _ => {}
                        }
                        Ok(())
                    })?;
                    r.notify = Some(nt);
                }
                (7, Val::Int(x)) => r.cr_errno = Some(x as i32),
                (8, Val::Bytes(b)) => r.features = Some(decode_features(b)?),
                (9, Val::Bytes(b)) => r.cr_errmsg = Some(text(b)),
                (10, Val::Bytes(b)) => {
                    let mut ver = Version::default();
                    each(b, |n, v| {
                        match (n, v) {
                            (1, Val::Int(x)) => ver.major = x as i32,
                            (2, Val::Int(x)) => ver.minor = x as i32,
                            (3, Val::Bytes(s)) => ver.gitid = Some(text(s)),
                            (4, Val::Int(x)) => ver.sublevel = x as i32,
                            _ => {}
                        }
                        Ok(())
                    })?;
                    r.version = Some(ver);
                }
                _ => {}
            }
            Ok(())
        })?;
        r.typ = typ.ok_or(DecodeError("no type"))?;
        r.success = success.ok_or(DecodeError("no success field"))?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes written by hand from the protobuf encoding rules, so the
    /// encoder is checked against the format, not against itself.
    #[test]
    fn a_request_encodes_as_protobuf() {
        let mut o = Opts {
            images_dir_fd: 5,
            pid: Some(300),
            leave_running: true,
            log_file: Some("d".into()),
            ..Default::default()
        };
        o.ext_mnt.push(("/a".into(), "/b".into()));
        o.empty_ns = 0x4000_0000;
        let got = Req::new(ReqType::Dump, Some(o)).encode();
        let opts: Vec<u8> = [
            &[0x08, 5][..],                              // images_dir_fd = 5
            &[0x10, 0xac, 0x02],                         // pid = 300
            &[0x18, 1],                                  // leave_running
            &[0x52, 1, b'd'],                            // log_file (10) = "d"
            &[0xba, 0x01, 8],                            // ext_mnt (23), 8 bytes
            &[0x0a, 2, b'/', b'a'],                      //   key
            &[0x12, 2, b'/', b'b'],                      //   val
            &[0xb0, 0x02, 0x80, 0x80, 0x80, 0x80, 0x04], // empty_ns (38)
        ]
        .concat();
        let mut want = vec![0x08, 1, 0x12, opts.len() as u8];
        want.extend(opts);
        assert_eq!(got, want);
    }

    #[test]
    fn a_negative_int32_takes_ten_bytes() {
        let o = Opts {
            images_dir_fd: -1,
            ..Default::default()
        };
        let got = Req::new(ReqType::Restore, Some(o)).encode();
        assert_eq!(
            got,
            [0x08, 2, 0x12, 11, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    #[test]
    fn responses_decode_and_unknown_fields_are_skipped() {
        // type NOTIFY, success, notify {script "post-restore", pid 42},
        // an unknown fixed32 field 12, an unknown varint field 11.
        let mut b = vec![0x08, 6, 0x10, 1, 0x2a, 16, 0x0a, 12];
        b.extend(b"post-restore");
        b.extend([0x10, 42, 0x65, 1, 2, 3, 4, 0x58, 7]);
        let r = Resp::decode(&b).unwrap();
        assert_eq!(r.typ, ReqType::Notify);
        assert!(r.success);
        assert_eq!(
            r.notify,
            Some(Notify {
                script: "post-restore".into(),
                pid: 42
            })
        );
        // A failed DUMP with errno and message; a VERSION answer.
        let mut b = vec![0x08, 1, 0x10, 0, 0x38, 2, 0x4a, 3];
        b.extend(b"bad");
        let r = Resp::decode(&b).unwrap();
        assert_eq!(
            (r.typ, r.success, r.cr_errno),
            (ReqType::Dump, false, Some(2))
        );
        assert_eq!(r.cr_errmsg.as_deref(), Some("bad"));
        let b = [0x08, 10, 0x10, 1, 0x52, 6, 0x08, 3, 0x10, 17, 0x20, 1];
        let v = Resp::decode(&b).unwrap().version.unwrap();
        assert_eq!((v.to_string(), v.number()), ("3.17.1".to_string(), 31701));
    }

    #[test]
    fn truncated_or_incomplete_responses_are_errors() {
        assert!(Resp::decode(&[0x08]).is_err());
        assert!(Resp::decode(&[0x08, 1, 0x12, 9, 1]).is_err());
        assert!(Resp::decode(&[0x10, 1]).is_err(), "no type");
        assert!(Resp::decode(&[0x08, 1]).is_err(), "no success");
    }
}
