//! `[revocation]`: where revocations are kept on one instance (`[cluster]` is in `cluster`).

use std::path::PathBuf;
use std::time::Duration;

use super::context::Cx;
use super::files;
use super::problem::invalid;
use super::raw::RawRevocation;
use super::settings::RevocationSettings;

/// Beyond this, a new not-before would refuse logins elsewhere for minutes: fix the clocks.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

pub(super) fn revocation(rv: RawRevocation, cx: &mut Cx<'_>) -> Option<RevocationSettings> {
    let journal = match rv.journal {
        None => Some(None),
        Some(j) if j.get_ref().is_empty() => cx.refuse(
            Some(j.span()),
            invalid("revocation.journal", "must be a file path"),
        ),
        Some(j) => {
            let path = PathBuf::from(j.get_ref());
            if cx.check_files {
                let usable =
                    files::journal_path(&path).map_err(|e| invalid("revocation.journal", e));
                cx.ok(Some(j.span()), usable);
            }
            Some(Some(path))
        }
    };
    let capacity = match rv.capacity {
        Some(c) if *c.get_ref() == 0 => cx.refuse(
            Some(c.span()),
            invalid("revocation.capacity", "must be at least 1"),
        ),
        c => Some(c.map_or(1_000_000, |c| c.into_inner())),
    };
    let clock_skew = match cx.duration("revocation.clock_skew", rv.clock_skew.as_ref(), "1s") {
        Some(d) if d > MAX_CLOCK_SKEW => cx.refuse(
            rv.clock_skew.as_ref().map(toml::Spanned::span),
            invalid(
                "revocation.clock_skew",
                "must be at most 5m (synchronise the clocks instead)",
            ),
        ),
        d => d,
    };
    Some(RevocationSettings {
        journal: journal?,
        capacity: capacity?,
        clock_skew: clock_skew?,
    })
}
