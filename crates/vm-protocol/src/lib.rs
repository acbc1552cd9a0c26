//! The host↔agent protocol of VM mode: message types and framing, shared by
//! the `vm` crate (host) and the `agent` crate (guest).
//!
//! Two virtio-serial ports carry it. The **control** port carries JSON
//! messages: requests from the host (each with an id) and, from the guest,
//! replies, process exits and log lines. The **stdio** port carries the bytes
//! of every process's stdin, stdout and stderr, tagged with a stream number,
//! so output never has to be interleaved with control messages.
//!
//! Every message on either port is one frame: a little-endian `u32` body
//! length, then the body. A stdio body is `u32 stream`, `u8 fd`, then the
//! data; empty data means end of file on that descriptor.

use oci_spec::runtime::{LinuxResources, Process};
use sandbox::cgroups::Stats;
use serde::{Deserialize, Serialize};

/// Protocol version, sent in [`Ready`]; the host refuses another.
pub const VERSION: u32 = 4;
/// Name of the virtio-serial port for control messages.
pub const CONTROL_PORT: &str = "org.nano-sandbox.control";
/// Name of the virtio-serial port for stdio frames.
pub const STDIO_PORT: &str = "org.nano-sandbox.stdio";
/// 9p mount tag of the directory the host shares with the guest.
pub const SHARE_TAG: &str = "nkshare";
/// Where the agent mounts the shared directory.
pub const SHARE_MOUNT: &str = "/run/nk/share";
/// Largest frame body either side accepts.
pub const MAX_FRAME: usize = 16 << 20;
/// Stream number of a container's main process.
pub const INIT_STREAM: u32 = 1;

/// A request from the host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostMsg {
    /// Echoed in the [`GuestMsg::Reply`].
    pub id: u64,
    pub req: Request,
}

/// What the host asks of the agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Liveness check; answered with [`Reply::Pong`].
    Ping,
    /// The first request to a VM restored from a template snapshot, before
    /// anything else runs there: every clone of one template starts with
    /// the same random-number state and the clock of the moment it was
    /// saved, so the agent mixes in fresh host entropy, reseeds the
    /// kernel's CRNG and sets the clock. Answered with [`Reply::Pong`].
    Wake(Wake),
    /// Create a container (parked before its program, as `create` does).
    Create(CreateContainer),
    /// Run the program of a created container.
    Start { id: String },
    /// Signal the container's init, or with `all` every process of it.
    Kill { id: String, signal: i32, all: bool },
    /// Start another process inside a running container.
    Exec(ExecProcess),
    /// Run a program in the guest itself, outside any container (the test
    /// harness uses this to drive the guest).
    Run(GuestCommand),
    /// The container's processes (guest pids).
    Ps { id: String },
    /// Freeze the container (cgroup v2 `cgroup.freeze` in the guest).
    Pause { id: String },
    /// Thaw it.
    Resume { id: String },
    /// The container's cgroup counters.
    Stats { id: String },
    /// Apply new `linux.resources` to the running container.
    Update {
        id: String,
        resources: Box<LinuxResources>,
    },
    /// Send a signal to the process of a stream (an exec'd process).
    Signal { stream: u32, signal: i32 },
    /// Set the window size of a stream's terminal.
    Resize { stream: u32, rows: u16, cols: u16 },
    /// Kill every process of a container and remove it, with its overlay
    /// (a pod's later container, whose VM stays up; its init's `exited`
    /// follows as usual).
    Delete { id: String },
    /// Checkpoint a container with CRIU inside the guest, into an image
    /// directory the host shares ([`CheckpointContainer`]). Without
    /// `leave_running` CRIU kills the container's processes and the agent
    /// deletes it, as runc does; its init's `exited` follows.
    Checkpoint(CheckpointContainer),
    /// Create a container from a checkpoint instead of its program
    /// ([`RestoreContainer`]): the bundle as `Create` makes it, then CRIU
    /// rebuilds the process tree in it. Answered with [`Reply::Created`];
    /// the container is then running.
    Restore(RestoreContainer),
    /// Kill everything and power the VM off.
    Shutdown,
    /// The answer to a container's DNS query ([`GuestMsg::Dns`]), from the
    /// engine's resolver on the host. The agent sends it back to the
    /// querying socket and does not reply to this message.
    DnsAnswer { query: u32, data: Vec<u8> },
}

/// What a restored VM gets from the host before it runs anything.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Wake {
    /// Random bytes from the host's /dev/urandom, credited to the guest's
    /// entropy pool.
    pub entropy: Vec<u8>,
    /// The host's CLOCK_REALTIME: seconds and nanoseconds since the epoch.
    pub realtime_secs: i64,
    pub realtime_nanos: u32,
}

/// A container to create inside the guest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateContainer {
    pub id: String,
    /// Stream number of the container's stdio.
    pub stream: u32,
    /// config.json, already rewritten by the host for the guest (mount
    /// sources point into [`SHARE_MOUNT`], no hooks, no host namespace paths).
    pub config: Box<oci_spec::runtime::Spec>,
    /// The rootfs: a path relative to [`SHARE_MOUNT`]. The agent mounts an
    /// overlay on it with a tmpfs upper layer, so the host files never change.
    pub rootfs: String,
    /// `--systemd-cgroup` on the host: interpret cgroupsPath as slice:prefix:name.
    pub systemd_cgroup: bool,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    /// The host's log level, so the guest's lines match it.
    pub log_level: String,
    /// `--preserve-fds`: the container gets fd 3 + i as a pipe carrying
    /// the contents of the host's descriptor, in the direction given. The
    /// bytes travel as stdio frames of the container's stream whose `fd`
    /// is that number.
    #[serde(default)]
    pub preserve_fds: Vec<Carry>,
    /// The engine's network, when the config named a network namespace:
    /// the agent moves these interfaces into the container's network
    /// namespace and configures them (and brings loopback up) before the
    /// container starts. None: the container's new namespace has only a
    /// loopback that is down, as in container mode.
    #[serde(default)]
    pub network: Option<Network>,
}

/// CRIU's tools for the guest, assembled on the host (the VM image has
/// none of them: they cost every boot and only checkpoint and restore use
/// them). Paths are relative to [`SHARE_MOUNT`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CriuKit {
    /// The kit's directory: `bin/`, `lib/`, `xtables/` and `mods/`.
    pub dir: String,
}

/// The runc checkpoint and restore flags that apply inside the guest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CriuOptions {
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub manage_cgroups_mode: Option<String>,
    pub empty_ns: Vec<String>,
    pub auto_dedup: bool,
}

/// A container to checkpoint inside the guest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointContainer {
    pub id: String,
    /// The image directory, relative to [`SHARE_MOUNT`] (the host's
    /// `--image-path`, mounted into the share for this request).
    pub images: String,
    pub kit: CriuKit,
    pub leave_running: bool,
    pub options: CriuOptions,
}

/// A container to restore inside the guest from a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreContainer {
    /// The container as `Create` would make it (its program is not run).
    pub create: CreateContainer,
    /// The image directory, relative to [`SHARE_MOUNT`].
    pub images: String,
    pub kit: CriuKit,
    pub options: CriuOptions,
}

/// Which way a descriptor passed with `--preserve-fds` carries data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Carry {
    /// The host reads it (a file or pipe opened for reading); the container reads the bytes.
    ToContainer,
    /// The container writes; the host writes the bytes to it.
    FromContainer,
}

/// The interfaces of the engine's network namespace, as the guest gets them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub interfaces: Vec<NetInterface>,
    /// Serve [`DOCKER_DNS`] port 53 (UDP) in the container's namespace and
    /// relay each query to the host ([`GuestMsg::Dns`]), where the monitor
    /// asks the same address in the engine's namespace: Docker's embedded
    /// resolver answers there, through iptables rules of that namespace that
    /// the guest's packets never cross.
    #[serde(default)]
    pub dns_relay: bool,
}

/// Docker's embedded DNS resolver, as a user-defined network's resolv.conf
/// names it.
pub const DOCKER_DNS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 11);

/// One interface: the host's veth (or macvlan...) seen through its tap.
/// The guest's virtio-net card ends up with the same MAC: a booted guest's
/// has it from the start, which is how the agent finds the card; a
/// template's clone has the template's ([`template_mac`]), named in
/// `card_mac`, and the agent sets `mac` on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetInterface {
    /// The name in the engine's namespace (eth0), which the guest's gets too.
    pub name: String,
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// The MAC the guest's card has now, when it is not `mac`: in a VM
    /// restored from a template, the template's card's.
    #[serde(default)]
    pub card_mac: Option<String>,
    pub mtu: u32,
    pub addresses: Vec<sandbox::linux::netlink::IpNet>,
    /// In an order in which each can be added (link routes first).
    pub routes: Vec<sandbox::linux::netlink::Route>,
}

/// The MAC of a template's `n`th network card (locally administered,
/// unicast; `6e:6b` is "nk"). A clone resumes with it in the guest until
/// the agent sets the card's real one.
pub fn template_mac(n: usize) -> String {
    format!("02:6e:6b:00:{:02x}:{:02x}", (n >> 8) & 0xff, n & 0xff)
}

/// A process to add to a running container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecProcess {
    pub id: String,
    pub stream: u32,
    /// The OCI process, complete (args, env, cwd, user, terminal...).
    pub process: Box<Process>,
}

/// A program to run in the guest, outside containers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuestCommand {
    pub stream: u32,
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub cwd: Option<String>,
}

/// A process seen in the guest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub cmd: String,
}

/// A successful answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Done,
    Pong {
        uptime_ms: u64,
    },
    /// The container's init, as a guest pid.
    Created {
        pid: i32,
    },
    /// A started exec or guest process.
    Started {
        pid: i32,
    },
    Procs(Vec<ProcInfo>),
    /// The container's cgroup counters, in the library's (runc's) shape.
    Stats(Box<Stats>),
}

/// The agent's greeting, sent once the ports are open.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ready {
    pub version: u32,
    /// Guest uptime when the agent became ready.
    pub uptime_ms: u64,
    /// The guest kernel release.
    pub kernel: String,
}

/// A message from the agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestMsg {
    Ready(Ready),
    /// The answer to request `id`: `error` is set when it failed.
    Reply {
        id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ok: Option<Reply>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A process ended; `status` is shell style (code, or 128+signal). Sent
    /// after the process's output has been flushed to the stdio port.
    Exited {
        stream: u32,
        status: i32,
    },
    /// A log line from the agent or the library inside the guest.
    Log {
        level: String,
        msg: String,
    },
    /// A DNS query (the UDP payload) a container sent to [`DOCKER_DNS`]:53,
    /// numbered by the agent; answered with [`Request::DnsAnswer`], or not
    /// at all (the container's resolver then times out, as when a packet is lost).
    Dns {
        query: u32,
        data: Vec<u8>,
    },
}

/// stdin / stdout / stderr.
pub const FD_STDIN: u8 = 0;
pub const FD_STDOUT: u8 = 1;
pub const FD_STDERR: u8 = 2;
/// The first descriptor passed with `--preserve-fds` (its frames carry its number).
pub const FD_PRESERVED: u8 = 3;

/// One chunk of a process's stdio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdioFrame {
    pub stream: u32,
    pub fd: u8,
    /// Empty means end of file.
    pub data: Vec<u8>,
}

/// A framing error: the peer sent something that is not a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    TooLarge(usize),
    Malformed(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge(n) => write!(f, "frame of {n} bytes exceeds {MAX_FRAME}"),
            FrameError::Malformed(m) => write!(f, "malformed frame: {m}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Wrap a body in a frame.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(body.len() + 4);
    v.extend_from_slice(&(body.len() as u32).to_le_bytes());
    v.extend_from_slice(body);
    v
}

/// A control message as one frame.
pub fn encode_json<T: Serialize>(msg: &T) -> Vec<u8> {
    frame(&serde_json::to_vec(msg).expect("protocol types always serialize"))
}

/// Parse a control frame body.
pub fn decode_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(body).map_err(|e| FrameError::Malformed(e.to_string()))
}

/// A stdio chunk as one frame.
pub fn encode_stdio(stream: u32, fd: u8, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len() + 9);
    v.extend_from_slice(&((data.len() + 5) as u32).to_le_bytes());
    v.extend_from_slice(&stream.to_le_bytes());
    v.push(fd);
    v.extend_from_slice(data);
    v
}

/// Parse a stdio frame body.
pub fn decode_stdio(body: &[u8]) -> Result<StdioFrame, FrameError> {
    if body.len() < 5 {
        return Err(FrameError::Malformed(format!(
            "stdio frame of {} bytes is shorter than its 5-byte header",
            body.len()
        )));
    }
    Ok(StdioFrame {
        stream: u32::from_le_bytes([body[0], body[1], body[2], body[3]]),
        fd: body[4],
        data: body[5..].to_vec(),
    })
}

/// Reassembles frames from a byte stream that arrives in pieces.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
}

impl FrameReader {
    pub fn new() -> FrameReader {
        FrameReader::default()
    }

    /// Append bytes read from the port.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame body, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let avail = &self.buf[self.start..];
        if avail.len() < 4 {
            self.compact();
            return Ok(None);
        }
        let len = u32::from_le_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        if avail.len() < 4 + len {
            self.compact();
            return Ok(None);
        }
        let body = avail[4..4 + len].to_vec();
        self.start += 4 + len;
        Ok(Some(body))
    }

    /// Bytes received but not yet returned as frames.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

/// Read one frame body from a blocking reader; `None` at a clean end of file.
pub fn read_frame(r: &mut impl std::io::Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            FrameError::TooLarge(len),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(Some(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_reassemble_across_pieces() {
        let mut wire = encode_json(&HostMsg {
            id: 7,
            req: Request::Kill {
                id: "c1".into(),
                signal: 15,
                all: false,
            },
        });
        wire.extend(encode_stdio(3, FD_STDERR, b"oops"));
        wire.extend(encode_stdio(3, FD_STDOUT, b""));
        let mut r = FrameReader::new();
        let mut bodies = Vec::new();
        for chunk in wire.chunks(3) {
            r.push(chunk);
            while let Some(b) = r.next_frame().unwrap() {
                bodies.push(b);
            }
        }
        assert_eq!(bodies.len(), 3);
        assert_eq!(r.pending(), 0);
        let m: HostMsg = decode_json(&bodies[0]).unwrap();
        assert_eq!(m.id, 7);
        assert!(matches!(m.req, Request::Kill { signal: 15, .. }));
        assert_eq!(
            decode_stdio(&bodies[1]).unwrap(),
            StdioFrame {
                stream: 3,
                fd: FD_STDERR,
                data: b"oops".to_vec()
            }
        );
        assert!(decode_stdio(&bodies[2]).unwrap().data.is_empty());
    }

    #[test]
    fn oversized_and_short_frames_are_errors() {
        let mut r = FrameReader::new();
        r.push(&((MAX_FRAME as u32) + 1).to_le_bytes());
        assert!(matches!(r.next_frame(), Err(FrameError::TooLarge(_))));
        assert!(decode_stdio(&[1, 0]).is_err());
    }

    #[test]
    fn replies_round_trip_through_json() {
        let m = GuestMsg::Reply {
            id: 2,
            ok: None,
            error: Some("container x does not exist".into()),
        };
        let body = &encode_json(&m)[4..];
        match decode_json::<GuestMsg>(body).unwrap() {
            GuestMsg::Reply { id, ok, error } => {
                assert_eq!(id, 2);
                assert!(ok.is_none());
                assert_eq!(error.as_deref(), Some("container x does not exist"));
            }
            other => panic!("{other:?}"),
        }
        let mut cur = std::io::Cursor::new(encode_json(&GuestMsg::Exited {
            stream: 1,
            status: 7,
        }));
        let b = read_frame(&mut cur).unwrap().unwrap();
        assert!(matches!(
            decode_json::<GuestMsg>(&b).unwrap(),
            GuestMsg::Exited {
                stream: 1,
                status: 7
            }
        ));
        assert!(read_frame(&mut cur).unwrap().is_none());
    }
}
