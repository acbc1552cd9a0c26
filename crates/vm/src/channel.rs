//! The host end of the agent protocol: requests with ids on the control
//! port, replies matched to them, and everything else (exits, log lines)
//! queued as events; stdio frames decoded from the stdio port.

use crate::error::{Error, Result};
use crate::qemu::{read_nb, set_nonblocking, write_all_fd, ReadResult};
use std::collections::{HashMap, VecDeque};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use vm_protocol::{FrameReader, GuestMsg, HostMsg, Reply, Request, StdioFrame};

/// The control port.
#[derive(Debug)]
pub struct AgentConn {
    pub ctl: UnixStream,
    reader: FrameReader,
    next_id: u64,
    replies: HashMap<u64, std::result::Result<Reply, String>>,
    /// Messages that are not replies, in arrival order.
    pub events: VecDeque<GuestMsg>,
    pub closed: bool,
}

impl AgentConn {
    pub fn new(ctl: UnixStream) -> AgentConn {
        set_nonblocking(ctl.as_raw_fd());
        AgentConn {
            ctl,
            reader: FrameReader::new(),
            next_id: 1,
            replies: HashMap::new(),
            events: VecDeque::new(),
            closed: false,
        }
    }

    /// Send a request; returns its id.
    pub fn send(&mut self, req: Request) -> Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let bytes = vm_protocol::encode_json(&HostMsg { id, req });
        write_all_fd(self.ctl.as_raw_fd(), &bytes)
            .map_err(|e| Error::Protocol(format!("write to the control port: {e}")))?;
        Ok(id)
    }

    /// Read whatever has arrived. Returns false once the port is closed.
    pub fn pump(&mut self) -> Result<bool> {
        let mut buf = [0u8; 16384];
        loop {
            match read_nb(self.ctl.as_raw_fd(), &mut buf) {
                ReadResult::Data(n) => self.reader.push(&buf[..n]),
                ReadResult::Eof => {
                    self.closed = true;
                    break;
                }
                ReadResult::WouldBlock => break,
            }
        }
        while let Some(body) = self
            .reader
            .next_frame()
            .map_err(|e| Error::Protocol(e.to_string()))?
        {
            let msg: GuestMsg =
                vm_protocol::decode_json(&body).map_err(|e| Error::Protocol(e.to_string()))?;
            match msg {
                GuestMsg::Reply { id, ok, error } => {
                    let r = match (ok, error) {
                        (_, Some(e)) => Err(e),
                        (Some(r), None) => Ok(r),
                        (None, None) => Ok(Reply::Done),
                    };
                    self.replies.insert(id, r);
                }
                other => self.events.push_back(other),
            }
        }
        Ok(!self.closed)
    }

    /// The reply to `id`, once it has arrived.
    pub fn take_reply(&mut self, id: u64) -> Option<std::result::Result<Reply, String>> {
        self.replies.remove(&id)
    }
}

/// The stdio port.
#[derive(Debug)]
pub struct StdioPort {
    pub sock: UnixStream,
    reader: FrameReader,
    pub closed: bool,
}

impl StdioPort {
    pub fn new(sock: UnixStream) -> StdioPort {
        set_nonblocking(sock.as_raw_fd());
        StdioPort {
            sock,
            reader: FrameReader::new(),
            closed: false,
        }
    }

    /// Frames that have arrived (reads at most `budget` bytes, so one busy
    /// stream cannot starve the caller's other work).
    pub fn pump(&mut self, budget: usize) -> Result<Vec<StdioFrame>> {
        let mut buf = [0u8; 65536];
        let mut got = 0;
        while got < budget {
            match read_nb(self.sock.as_raw_fd(), &mut buf) {
                ReadResult::Data(n) => {
                    got += n;
                    self.reader.push(&buf[..n]);
                }
                ReadResult::Eof => {
                    self.closed = true;
                    break;
                }
                ReadResult::WouldBlock => break,
            }
        }
        let mut out = Vec::new();
        while let Some(body) = self
            .reader
            .next_frame()
            .map_err(|e| Error::Protocol(e.to_string()))?
        {
            out.push(vm_protocol::decode_stdio(&body).map_err(|e| Error::Protocol(e.to_string()))?);
        }
        Ok(out)
    }

    /// Send stdin data (empty = end of file) to a stream.
    pub fn send_stdin(&mut self, stream: u32, data: &[u8]) -> Result<()> {
        self.send(stream, vm_protocol::FD_STDIN, data)
    }

    /// Send data (empty = end of file) for descriptor `fd` of a stream.
    pub fn send(&mut self, stream: u32, fd: u8, data: &[u8]) -> Result<()> {
        let f = vm_protocol::encode_stdio(stream, fd, data);
        write_all_fd(self.sock.as_raw_fd(), &f)
            .map_err(|e| Error::Protocol(format!("write to the stdio port: {e}")))
    }
}
