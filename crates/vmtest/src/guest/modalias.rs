//! The driver data the give-back needs is really in the guest: each victim's
//! `modalias` matches its module in `modules.alias` (loadable) or in
//! `modules.builtin.modinfo` (built in), read here independently of the engine.

use std::fs;

use anyhow::{Context, ensure};

use super::sysfs::read;
use super::{Suite, Victim};

/// Runs the check.
pub fn run(suite: &mut Suite) {
    suite.check("modalias.resolve", |s| {
        let release = read("/proc/sys/kernel/osrelease").context("no osrelease")?;
        let dir = format!("/lib/modules/{release}");
        let alias = fs::read_to_string(format!("{dir}/modules.alias"))
            .with_context(|| format!("{dir}/modules.alias"))?;
        let builtin = fs::read(format!("{dir}/modules.builtin.modinfo"))
            .with_context(|| format!("{dir}/modules.builtin.modinfo"))?;
        let inv = s.scan();
        let mut detail = Vec::new();
        for v in Victim::ALL {
            let d = v
                .find(&inv)
                .with_context(|| format!("{} not found", v.name()))?;
            let ma = d
                .modalias
                .as_deref()
                .with_context(|| format!("{} has no modalias", d.address))?;
            let mut hits: Vec<String> = alias
                .lines()
                .filter_map(|l| {
                    let mut f = l.split_whitespace();
                    (f.next()? == "alias").then_some(())?;
                    let (pat, module) = (f.next()?, f.next()?);
                    glob(pat.as_bytes(), ma.as_bytes()).then(|| module.to_owned())
                })
                .collect();
            let source = if hits.is_empty() {
                hits = builtin
                    .split(|b| *b == 0)
                    .filter_map(|rec| {
                        let rec = std::str::from_utf8(rec).ok()?;
                        let (module, pat) = rec.split_once(".alias=")?;
                        glob(pat.as_bytes(), ma.as_bytes()).then(|| module.to_owned())
                    })
                    .collect();
                "modules.builtin.modinfo"
            } else {
                "modules.alias"
            };
            hits.dedup();
            if hits.is_empty() && source == "modules.builtin.modinfo" {
                // Kernels before ~6.11 record no device-table aliases for
                // built-in modules: then only the kernel's own match
                // (drivers_probe) finds the driver. Check it is built in.
                let file = format!("{}.file=", v.module());
                let listed = builtin
                    .split(|b| *b == 0)
                    .any(|rec| rec.starts_with(file.as_bytes()));
                ensure!(
                    listed,
                    "{} {ma}: no alias anywhere and {} is not built in",
                    v.name(),
                    v.module()
                );
                detail.push(format!(
                    "{} -> built-in {} without alias records (drivers_probe only)",
                    v.name(),
                    v.module()
                ));
                continue;
            }
            ensure!(
                hits.iter().any(|m| m == v.module()),
                "{} {ma}: {source} gives {hits:?}, expected {}",
                v.name(),
                v.module()
            );
            detail.push(format!("{} -> {hits:?} ({source})", v.name()));
        }
        Ok(detail.join("; "))
    });
}

/// fnmatch-style match of the whole `text`: `*`, `?` and `[...]` classes.
fn glob(pat: &[u8], text: &[u8]) -> bool {
    match pat.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((b'[', rest)) => {
            let Some(end) = rest.iter().skip(1).position(|b| *b == b']').map(|p| p + 1) else {
                return text.first() == Some(&b'[') && glob(rest, &text[1..]);
            };
            let Some((&c, tail)) = text.split_first() else {
                return false;
            };
            let (negate, set) = match rest[..end].split_first() {
                Some((b'!' | b'^', s)) => (true, s),
                _ => (false, &rest[..end]),
            };
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == b'-' {
                    hit |= set[i] <= c && c <= set[i + 2];
                    i += 3;
                } else {
                    hit |= set[i] == c;
                    i += 1;
                }
            }
            hit != negate && glob(&rest[end + 1..], tail)
        }
        Some((&p, rest)) => text.first() == Some(&p) && glob(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs_like_fnmatch() {
        let ma = b"pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00";
        assert!(glob(b"pci:v00001AF4d*sv*sd*bc*sc*i*", ma));
        assert!(!glob(b"pci:v00008086d*sv*sd*bc*sc*i*", ma));
        assert!(glob(b"pci:v*d*sv*sd*bc02sc0[0-9]i*", ma));
        assert!(!glob(b"pci:v*d*sv*sd*bc02sc0[!0]i*", ma));
        assert!(glob(b"pci:v0000?AF4*", ma));
        assert!(glob(b"", b""));
        assert!(!glob(b"a", b""));
        assert!(glob(b"[", b"["));
    }
}
