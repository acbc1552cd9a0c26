//! A writer for the `newc` cpio format, the format the kernel unpacks an
//! initramfs from. Uncompressed on purpose: under TCG, decompressing a gzip
//! initramfs in the guest costs more than copying a few extra megabytes.

/// One initramfs being assembled in memory.
#[derive(Debug, Default)]
pub struct Archive {
    out: Vec<u8>,
    ino: u32,
}

impl Archive {
    pub fn new() -> Archive {
        Archive::default()
    }

    fn header(&mut self, name: &str, mode: u32, size: usize, rdev: (u32, u32)) {
        self.ino += 1;
        let namesize = name.len() + 1;
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            if mode & 0o170000 == 0o040000 { 2 } else { 1 },
            0, // mtime: fixed, so the same inputs give the same bytes
            size as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            namesize as u32,
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    /// A directory (parents must be added first).
    pub fn dir(&mut self, name: &str, perm: u32) {
        self.header(name, 0o040000 | perm, 0, (0, 0));
    }

    /// A regular file.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.header(name, 0o100000 | perm, data.len(), (0, 0));
        self.out.extend_from_slice(data);
        self.pad();
    }

    /// A character device node.
    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) {
        self.header(name, 0o020000 | perm, 0, (major, minor));
    }

    /// Close the archive and return its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.header("TRAILER!!!", 0, 0, (0, 0));
        // The kernel reads the initramfs in 512-byte blocks.
        while !self.out.len().is_multiple_of(512) {
            self.out.push(0);
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout() {
        let mut a = Archive::new();
        a.dir("lib", 0o755);
        a.file("init", 0o755, b"hello");
        a.char_dev("dev/console", 0o600, 5, 1);
        let out = a.finish();
        assert!(out.len().is_multiple_of(512));
        assert_eq!(&out[..6], b"070701");
        // The file header: mode 0o100755 and size 5, then name, then data at a 4-byte boundary.
        let s = String::from_utf8_lossy(&out);
        let at = s.find("init\0").unwrap();
        let hdr = &s[at - 110..at];
        assert_eq!(&hdr[14..22], "000081ED");
        assert_eq!(&hdr[54..62], "00000005");
        let data_at = (at + 5).div_ceil(4) * 4;
        assert_eq!(&out[data_at..data_at + 5], b"hello");
        assert!(s.contains("TRAILER!!!"));
        // The console node carries its device numbers.
        let c = s.find("dev/console\0").unwrap();
        let ch = &s[c - 110..c];
        assert_eq!(&ch[78..86], "00000005");
        assert_eq!(&ch[86..94], "00000001");
    }
}
