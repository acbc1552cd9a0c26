//! A minimal client of QEMU's machine protocol (QMP): JSON commands, one
//! per line, on a socketpair QEMU gets as a descriptor (no socket file).
//! VM mode uses it only for template snapshots (crate::template): to save
//! a booted guest's device state, and to load it into a new QEMU.

use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// A QMP connection, past the capabilities negotiation.
pub struct Qmp {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Qmp {
    /// Read QEMU's greeting and leave capabilities-negotiation mode. Each
    /// answer must come within `timeout`.
    pub fn connect(s: UnixStream, timeout: Duration) -> Result<Qmp> {
        let io = |e| Error::io("set a timeout on", "the QMP socket", e);
        s.set_read_timeout(Some(timeout)).map_err(io)?;
        let r = BufReader::new(
            s.try_clone()
                .map_err(|e| Error::io("dup", "the QMP socket", e))?,
        );
        let mut q = Qmp { w: s, r };
        let greeting = q.line()?;
        if greeting.get("QMP").is_none() {
            return Err(Error::Protocol(format!(
                "QMP: expected QEMU's greeting, got {greeting}"
            )));
        }
        q.execute("qmp_capabilities", json!({}))?;
        Ok(q)
    }

    fn line(&mut self) -> Result<Value> {
        let mut l = String::new();
        match self.r.read_line(&mut l) {
            Ok(0) => Err(Error::Protocol("QMP: QEMU closed the connection".into())),
            Ok(_) => {
                serde_json::from_str(&l).map_err(|e| Error::Protocol(format!("QMP: {e} in {l:?}")))
            }
            Err(e) => Err(Error::io("read", "the QMP socket", e)),
        }
    }

    /// Run a command and return its `return` value; QMP's `error` becomes
    /// an error naming the command. Events that arrive meanwhile are skipped.
    pub fn execute(&mut self, cmd: &str, args: Value) -> Result<Value> {
        let mut m = json!({ "execute": cmd });
        if args.as_object().is_some_and(|o| !o.is_empty()) {
            m["arguments"] = args;
        }
        let mut line = m.to_string();
        line.push('\n');
        self.w
            .write_all(line.as_bytes())
            .map_err(|e| Error::io("write", "the QMP socket", e))?;
        self.answer(cmd)
    }

    fn answer(&mut self, cmd: &str) -> Result<Value> {
        loop {
            let v = self.line()?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(Error::Protocol(format!(
                    "QMP {cmd}: {}",
                    e["desc"].as_str().unwrap_or("(no description)")
                )));
            }
        }
    }

    /// Give QEMU a descriptor under `name` (`getfd`, the descriptor going
    /// along as SCM_RIGHTS), for a later `fd:name` URI.
    pub fn send_fd(&mut self, name: &str, fd: BorrowedFd<'_>) -> Result<()> {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
        let line = format!(
            "{}\n",
            json!({ "execute": "getfd", "arguments": { "fdname": name } })
        );
        let fds = [fd.as_raw_fd()];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let iov = [std::io::IoSlice::new(line.as_bytes())];
        sendmsg::<()>(self.w.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
            .map_err(|e| Error::sys("sendmsg(SCM_RIGHTS) on the QMP socket", e))?;
        self.answer("getfd").map(|_| ())
    }

    /// Turn one migration capability on (`migrate-set-capabilities`).
    pub fn capability(&mut self, name: &str) -> Result<()> {
        self.execute(
            "migrate-set-capabilities",
            json!({ "capabilities": [ { "capability": name, "state": true } ] }),
        )
        .map(|_| ())
    }

    /// Poll `query-migrate` until the migration completes (or fails), for
    /// up to `limit`; returns QEMU's final status object.
    pub fn wait_migration(&mut self, limit: Duration) -> Result<Value> {
        let end = std::time::Instant::now() + limit;
        loop {
            let st = self.execute("query-migrate", json!({}))?;
            match st["status"].as_str() {
                Some("completed") => return Ok(st),
                Some("failed") | Some("cancelled") => {
                    return Err(Error::Protocol(format!(
                        "QMP: the migration {}: {}",
                        st["status"].as_str().unwrap_or_default(),
                        st["error-desc"].as_str().unwrap_or("(no reason given)")
                    )))
                }
                _ => {}
            }
            if std::time::Instant::now() > end {
                return Err(Error::Timeout {
                    what: "QEMU's migration to the template file".into(),
                    secs: limit.as_secs(),
                    detail: format!("; last status {st}"),
                });
            }
            // QMP has no blocking wait for this (the MIGRATION event needs
            // the events capability, and this stays simple): poll it, the
            // device state alone takes milliseconds.
            crate::qemu::poll_in(&[], Some(Duration::from_millis(5)));
        }
    }
}
