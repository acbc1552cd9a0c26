//! Device access rules: the OCI `linux.resources.devices` list, the way the
//! v1 devices controller evaluates it, and the smallest set of writes that
//! moves a live v1 cgroup from its current list to a new one.
//!
//! The v1 kernel keeps a default (allow or deny) plus a list of exceptions.
//! Replaying the OCI list from scratch would start with `a` (deny all), which
//! the kernel refuses once the cgroup has children and which briefly cuts a
//! running container off /dev/null; so `update` writes only the difference,
//! as runc does. The same normalised list feeds the v2 eBPF filter, so both
//! layouts decide alike.

use crate::error::{Error, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

/// Access bits, as the eBPF device context encodes them.
pub const ACC_MKNOD: u8 = 1;
/// Read access.
pub const ACC_READ: u8 = 2;
/// Write access.
pub const ACC_WRITE: u8 = 4;
/// r, w and m.
pub const ACC_ALL: u8 = 7;

/// The device type of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DevType {
    /// Every type (only in the "all devices" rule).
    All,
    Char,
    Block,
}

impl DevType {
    fn letter(self) -> char {
        match self {
            DevType::All => 'a',
            DevType::Char => 'c',
            DevType::Block => 'b',
        }
    }
}

/// One rule: type, major and minor (None is the `*` wildcard), access, allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub typ: DevType,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u8,
    pub allow: bool,
}

impl Rule {
    /// The "all devices" rule (`a`), which sets the default.
    pub fn all(allow: bool) -> Rule {
        Rule {
            typ: DevType::All,
            major: None,
            minor: None,
            access: ACC_ALL,
            allow,
        }
    }

    /// Is this the rule that resets the whole list?
    pub fn is_all(&self) -> bool {
        self.typ == DevType::All
    }

    /// The line for devices.allow / devices.deny.
    pub fn cgroup_line(&self) -> String {
        if self.is_all() {
            return "a".into();
        }
        let n = |v: Option<u32>| v.map_or_else(|| "*".to_string(), |v| v.to_string());
        format!(
            "{} {}:{} {}",
            self.typ.letter(),
            n(self.major),
            n(self.minor),
            access_string(self.access)
        )
    }

    /// The v1 file the rule is written to.
    pub fn cgroup_file(&self) -> &'static str {
        if self.allow {
            "devices.allow"
        } else {
            "devices.deny"
        }
    }
}

/// `rwm` letters of an access mask.
pub fn access_string(a: u8) -> String {
    let mut s = String::new();
    if a & ACC_READ != 0 {
        s.push('r');
    }
    if a & ACC_WRITE != 0 {
        s.push('w');
    }
    if a & ACC_MKNOD != 0 {
        s.push('m');
    }
    s
}

fn parse_access(s: &str) -> Option<u8> {
    let mut a = 0;
    for c in s.chars() {
        a |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => return None,
        };
    }
    Some(a)
}

/// Convert the OCI list. Index `i` in errors is the position in
/// `linux.resources.devices`.
///
/// A rule of type `a` (or no type) with wildcard numbers and all of `rwm` is
/// the "all devices" rule. Any other `a` rule is split into a `c` and a `b`
/// rule: the v1 kernel would read it as "all devices" whatever its access,
/// which would turn "allow read of everything" into "allow everything".
pub fn from_oci(list: &[LinuxDeviceCgroup]) -> Result<Vec<Rule>> {
    let mut out = Vec::new();
    for (i, d) in list.iter().enumerate() {
        let field = format!("linux.resources.devices[{i}]");
        let access = match d.access().as_deref() {
            None | Some("") => ACC_ALL,
            Some(s) => parse_access(s).ok_or_else(|| {
                Error::msg(format!("{field}.access: {s:?} is not made of r, w and m"))
            })?,
        };
        let num = |v: Option<i64>, what: &str| -> Result<Option<u32>> {
            match v {
                None => Ok(None),
                Some(n) if n < 0 => Ok(None),
                Some(n) => u32::try_from(n)
                    .map(Some)
                    .map_err(|_| Error::msg(format!("{field}.{what}: {n} is out of range"))),
            }
        };
        let (major, minor) = (num(d.major(), "major")?, num(d.minor(), "minor")?);
        let typ = match d.typ() {
            None | Some(LinuxDeviceType::A) => DevType::All,
            Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => DevType::Char,
            Some(LinuxDeviceType::B) => DevType::Block,
            Some(LinuxDeviceType::P) => {
                return Err(Error::msg(format!(
                    "{field}.type: \"p\" (a FIFO) is not a device type the cgroup controls; use a, b or c"
                )))
            }
        };
        let allow = d.allow();
        if typ == DevType::All {
            if major.is_none() && minor.is_none() && access == ACC_ALL {
                out.push(Rule::all(allow));
            } else {
                for t in [DevType::Char, DevType::Block] {
                    out.push(Rule {
                        typ: t,
                        major,
                        minor,
                        access,
                        allow,
                    });
                }
            }
        } else {
            out.push(Rule {
                typ,
                major,
                minor,
                access,
                allow,
            });
        }
    }
    Ok(out)
}

type Key = (DevType, Option<u32>, Option<u32>);

/// Exceptions by device with their access, in the order they were added:
/// the v1 kernel appends a new exception to its list and `devices.list`
/// shows that order, so the config's order survives into the cgroup.
#[derive(Debug, Clone, Default)]
pub struct Exceptions(Vec<(Key, u8)>);

impl Exceptions {
    /// The access of one device's exception.
    pub fn get(&self, k: &Key) -> Option<u8> {
        self.0.iter().find(|(x, _)| x == k).map(|(_, a)| *a)
    }

    /// Add access to a device's exception, appending a new one at the end.
    fn grant(&mut self, k: Key, access: u8) {
        match self.0.iter_mut().find(|(x, _)| *x == k) {
            Some((_, a)) => *a |= access,
            None => self.0.push((k, access)),
        }
    }

    /// Take access away; an exception left without access goes.
    fn revoke(&mut self, k: &Key, access: u8) {
        if let Some(i) = self.0.iter().position(|(x, _)| x == k) {
            self.0[i].1 &= !access;
            if self.0[i].1 == 0 {
                self.0.remove(i);
            }
        }
    }

    fn clear(&mut self) {
        self.0.clear();
    }

    /// The exceptions in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &u8)> {
        self.0.iter().map(|(k, a)| (k, a))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The same access for the same devices, whatever the order (the kernel's
/// decisions do not depend on it).
impl PartialEq for Exceptions {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, a)| other.get(k) == Some(*a))
    }
}

impl Eq for Exceptions {}

/// The v1 devices controller's state: a default and exceptions to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emulator {
    /// True: everything is allowed except the exceptions (a "blacklist").
    pub default_allow: bool,
    /// Exceptions to the default, by device, with their access.
    pub exceptions: Exceptions,
}

impl Default for Emulator {
    /// A new v1 cgroup under an unrestricted parent allows everything.
    fn default() -> Self {
        Emulator {
            default_allow: true,
            exceptions: Exceptions::default(),
        }
    }
}

impl Emulator {
    /// Apply rules in order, as the kernel would.
    pub fn from_rules(rules: &[Rule]) -> Result<Emulator> {
        let mut e = Emulator::default();
        for r in rules {
            e.apply(r)?;
        }
        Ok(e)
    }

    /// Read a v1 `devices.list`. In allow-by-default mode the kernel prints
    /// only `a *:* rwm`, so exceptions of that mode are unknown.
    pub fn from_list(text: &str) -> Result<Emulator> {
        let mut e = Emulator {
            default_allow: false,
            exceptions: Exceptions::default(),
        };
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let bad = || Error::msg(format!("devices.list: cannot parse {line:?}"));
            let mut it = line.split_whitespace();
            let (Some(t), Some(mm), Some(acc)) = (it.next(), it.next(), it.next()) else {
                return Err(bad());
            };
            let (ma, mi) = mm.split_once(':').ok_or_else(bad)?;
            let num = |s: &str| -> Result<Option<u32>> {
                if s == "*" {
                    Ok(None)
                } else {
                    s.parse().map(Some).map_err(|_| bad())
                }
            };
            let access = parse_access(acc).ok_or_else(bad)?;
            let typ = match t {
                "a" => {
                    e.default_allow = true;
                    e.exceptions.clear();
                    continue;
                }
                "c" => DevType::Char,
                "b" => DevType::Block,
                _ => return Err(bad()),
            };
            e.exceptions.grant((typ, num(ma)?, num(mi)?), access);
        }
        Ok(e)
    }

    /// Apply one rule with the kernel's semantics: `a` resets; a rule of the
    /// default's kind removes access from an exactly matching exception; a
    /// rule of the other kind adds an exception.
    pub fn apply(&mut self, r: &Rule) -> Result<()> {
        if r.is_all() {
            self.default_allow = r.allow;
            self.exceptions.clear();
            return Ok(());
        }
        let key = (r.typ, r.major, r.minor);
        if r.allow == self.default_allow {
            // Removing access: a wildcard exception that covers this device
            // would keep granting it in v1 (which only removes exact matches),
            // so refuse instead of leaving a silent hole.
            for (&(t, ma, mi), &acc) in self.exceptions.iter() {
                let covers = t == r.typ
                    && (ma.is_none() || ma == r.major)
                    && (mi.is_none() || mi == r.minor)
                    && (t, ma, mi) != key;
                if covers && acc & r.access != 0 {
                    return Err(Error::msg(format!(
                        "device rule {:?} ({}) cannot take access away from the wider rule {:?} already in the list: the devices cgroup only removes exact matches",
                        r.cgroup_line(),
                        if r.allow { "allow" } else { "deny" },
                        Rule { typ: t, major: ma, minor: mi, access: acc, allow: !r.allow }.cgroup_line()
                    )));
                }
            }
            self.exceptions.revoke(&key, r.access);
        } else {
            self.exceptions.grant(key, r.access);
        }
        Ok(())
    }

    /// The kernel's decision for one access (`typ` is Char or Block).
    pub fn allows(&self, typ: DevType, major: u32, minor: u32, access: u8) -> bool {
        let matches = |&(t, ma, mi): &Key| {
            t == typ && ma.is_none_or(|m| m == major) && mi.is_none_or(|m| m == minor)
        };
        if self.default_allow {
            // Denied when any exception overlaps the access, even partly.
            !self
                .exceptions
                .iter()
                .any(|(k, &acc)| matches(k) && acc & access != 0)
        } else {
            // Allowed only when one exception grants all of it.
            self.exceptions
                .iter()
                .any(|(k, &acc)| matches(k) && access & !acc == 0)
        }
    }

    /// The normalised rule list: the "all devices" rule, then the exceptions.
    pub fn rules(&self) -> Vec<Rule> {
        let mut v = vec![Rule::all(self.default_allow)];
        for (&(typ, major, minor), &access) in self.exceptions.iter() {
            v.push(Rule {
                typ,
                major,
                minor,
                access,
                allow: !self.default_allow,
            });
        }
        v
    }

    /// The writes that turn a cgroup in state `self` into `target`.
    ///
    /// A change of default, or a source in allow mode (whose exceptions
    /// devices.list does not show), needs the disruptive `a` rule first;
    /// otherwise only the access that changed is written.
    pub fn transition(&self, target: &Emulator) -> Vec<Rule> {
        let mut out = Vec::new();
        let old = if self.default_allow || self.default_allow != target.default_allow {
            out.push(Rule::all(target.default_allow));
            Exceptions::default()
        } else {
            self.exceptions.clone()
        };
        let rule = |(typ, major, minor): Key, access: u8, allow: bool| Rule {
            typ,
            major,
            minor,
            access,
            allow,
        };
        for (&k, &acc) in old.iter() {
            let dropped = acc & !target.exceptions.get(&k).unwrap_or(0);
            if dropped != 0 {
                out.push(rule(k, dropped, target.default_allow));
            }
        }
        for (&k, &acc) in target.exceptions.iter() {
            let gained = acc & !old.get(&k).unwrap_or(0);
            if gained != 0 {
                out.push(rule(k, gained, !target.default_allow));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oci(json: &str) -> Vec<Rule> {
        let v: Vec<LinuxDeviceCgroup> = serde_json::from_str(json).unwrap();
        from_oci(&v).unwrap()
    }

    const DOCKERISH: &str = r#"[{"allow":false,"access":"rwm"},
        {"allow":true,"type":"c","access":"m"},{"allow":true,"type":"b","access":"m"},
        {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},
        {"allow":true,"type":"c","major":136,"access":"rwm"},
        {"allow":true,"type":"c","major":1,"minor":5,"access":"r"}]"#;

    #[test]
    fn oci_rules_convert() {
        let r = oci(DOCKERISH);
        assert_eq!(r[0], Rule::all(false));
        assert_eq!(r[0].cgroup_line(), "a");
        assert_eq!(r[0].cgroup_file(), "devices.deny");
        assert_eq!(r[1].cgroup_line(), "c *:* m");
        assert_eq!(r[4].cgroup_line(), "c 136:* rwm");
        assert_eq!(r[5].cgroup_line(), "c 1:5 r");
        assert_eq!(r[5].cgroup_file(), "devices.allow");
        // A partial "a" rule becomes c and b rules, not "all devices".
        let r = oci(r#"[{"allow":true,"type":"a","access":"r"}]"#);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].cgroup_line(), "c *:* r");
        assert_eq!(r[1].cgroup_line(), "b *:* r");
        let bad: Vec<LinuxDeviceCgroup> =
            serde_json::from_str(r#"[{"allow":true,"type":"p","access":"r"}]"#).unwrap();
        let e = from_oci(&bad).unwrap_err().to_string();
        assert!(e.contains("devices[0].type"), "{e}");
    }

    #[test]
    fn emulator_decides_like_v1() {
        let e = Emulator::from_rules(&oci(DOCKERISH)).unwrap();
        assert!(!e.default_allow);
        assert!(e.allows(DevType::Char, 1, 3, ACC_READ | ACC_WRITE));
        assert!(e.allows(DevType::Char, 136, 7, ACC_WRITE));
        assert!(e.allows(DevType::Char, 99, 1, ACC_MKNOD));
        assert!(e.allows(DevType::Block, 8, 0, ACC_MKNOD));
        assert!(!e.allows(DevType::Block, 8, 0, ACC_READ));
        assert!(e.allows(DevType::Char, 1, 5, ACC_READ));
        assert!(!e.allows(DevType::Char, 1, 5, ACC_READ | ACC_WRITE));
        assert!(!e.allows(DevType::Char, 1, 8, ACC_READ));
        // Blacklist: a deny of w blocks any access that includes w.
        let b = Emulator::from_rules(&oci(
            r#"[{"allow":true,"access":"rwm"},{"allow":false,"type":"c","major":1,"minor":3,"access":"w"}]"#,
        ))
        .unwrap();
        assert!(b.default_allow);
        assert!(b.allows(DevType::Char, 1, 3, ACC_READ));
        assert!(!b.allows(DevType::Char, 1, 3, ACC_READ | ACC_WRITE));
        assert!(b.allows(DevType::Block, 1, 3, ACC_WRITE));
    }

    #[test]
    fn removing_exact_and_refusing_holes() {
        let mut e = Emulator::from_rules(&oci(DOCKERISH)).unwrap();
        e.apply(&oci(r#"[{"allow":false,"type":"c","major":1,"minor":3,"access":"w"}]"#)[0])
            .unwrap();
        assert!(e.allows(DevType::Char, 1, 3, ACC_READ));
        assert!(!e.allows(DevType::Char, 1, 3, ACC_WRITE));
        // c 136:4 w is inside the wildcard allow c 136:* rwm: refused.
        let err = e
            .apply(&oci(r#"[{"allow":false,"type":"c","major":136,"minor":4,"access":"w"}]"#)[0])
            .unwrap_err()
            .to_string();
        assert!(err.contains("c 136:* rwm"), "{err}");
    }

    #[test]
    fn exceptions_keep_the_rules_order() {
        let target = Emulator::from_rules(&oci(
            r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":10,"minor":229,"access":"rwm"},
                {"allow":true,"type":"b","major":8,"minor":20,"access":"rw"},{"allow":true,"type":"b","major":10,"minor":200,"access":"r"}]"#,
        ))
        .unwrap();
        let lines: Vec<String> = Emulator::default()
            .transition(&target)
            .iter()
            .map(|r| r.cgroup_line())
            .collect();
        assert_eq!(lines, ["a", "c 10:229 rwm", "b 8:20 rw", "b 10:200 r"]);
        // Equality does not depend on the order.
        let other = Emulator::from_list("b 10:200 r\nc 10:229 rwm\nb 8:20 rw\n").unwrap();
        assert_eq!(other, target);
    }

    #[test]
    fn list_parsing_and_transitions() {
        let cur = Emulator::from_list("c 1:3 rwm\nc 136:* rwm\nb *:* m\n").unwrap();
        assert!(!cur.default_allow);
        let target = Emulator::from_rules(&oci(
            r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"r"},
                {"allow":true,"type":"b","access":"m"},{"allow":true,"type":"c","major":10,"minor":200,"access":"rwm"}]"#,
        ))
        .unwrap();
        let t: Vec<(String, &str)> = cur
            .transition(&target)
            .iter()
            .map(|r| (r.cgroup_line(), r.cgroup_file()))
            .collect();
        assert_eq!(
            t,
            vec![
                ("c 1:3 wm".to_string(), "devices.deny"),
                ("c 136:* rwm".to_string(), "devices.deny"),
                ("c 10:200 rwm".to_string(), "devices.allow"),
            ]
        );
        // Replaying the transition on the current state reaches the target.
        let mut replay = cur.clone();
        for r in cur.transition(&target) {
            replay.apply(&r).unwrap();
        }
        assert_eq!(replay, target);
        // No change: no writes.
        assert!(target.transition(&target).is_empty());
        // From allow-all: the disruptive rule first.
        let all = Emulator::from_list("a *:* rwm\n").unwrap();
        let t = all.transition(&target);
        assert_eq!(t[0], Rule::all(false));
        assert_eq!(t.len(), 1 + target.exceptions.len());
        assert!(Emulator::from_list("x 1:2 r").is_err());
    }
}
