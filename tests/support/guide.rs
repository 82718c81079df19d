//! sealgate started with a configuration from `docs/providers.md`, as the guide prints it:
//! the TOML block under "Configure" of one provider's section, with only the listen address,
//! the issuer's scheme and host (the fake IdP keeps the guide's issuer path), the upstream's
//! address and the journal's path changed, and every `<placeholder>` filled in. A guide edit
//! that breaks a configuration, or moves a line these tests change, fails them.

use sealgate::{Clock, Options, Settings};
use tempfile::TempDir;

use super::app::{Harness, KEY, init_logs};
use super::idp::{Behaviour, FakeIdp};

const GUIDE: &str = include_str!("../../docs/providers.md");

/// The secrets the guide's configurations name.
fn env(name: &str) -> Option<String> {
    match name {
        "SEALGATE_CLIENT_SECRET" => Some("test-secret".into()),
        "SEALGATE_KEY" => Some(KEY.into()),
        _ => None,
    }
}

/// The TOML block under "Configure" in the guide's section `heading`, every `<placeholder>`
/// replaced by its words in lower case joined by `-` (`<api app id>` → `api-app-id`).
pub fn guide_toml(heading: &str) -> String {
    let start = GUIDE
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading:?} in docs/providers.md"));
    let section = &GUIDE[start..];
    let configure = section.find("### Configure").expect("a Configure part");
    let block = &section[configure..];
    let open = block.find("```toml\n").expect("a TOML block") + "```toml\n".len();
    let close = block[open..].find("```").expect("the block ends");
    let mut toml = block[open..open + close].to_owned();
    while let Some(lt) = toml.find('<') {
        let gt = lt + toml[lt..].find('>').expect("placeholder closed");
        let words: Vec<String> = toml[lt + 1..gt]
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        toml.replace_range(lt..=gt, &words.join("-"));
    }
    toml
}

/// The string value of the first `key = "…"` line.
pub fn value_of(toml: &str, key: &str) -> String {
    let prefix = format!("{key} = \"");
    let line = toml
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key} in {toml}"));
    line[..line.find('"').unwrap()].to_owned()
}

/// `toml` with `from` (which must be there) replaced by `to`.
pub fn swap(toml: &str, from: &str, to: &str) -> String {
    assert!(
        toml.contains(from),
        "{from:?} not in the guide's configuration"
    );
    toml.replacen(from, to, 1)
}

/// sealgate with the guide's configuration for `heading` (through `edit`), the fake IdP under
/// the path of the guide's issuer, knowing its client id, then set up by `setup`.
pub struct Profile {
    pub h: Harness,
    _dir: TempDir,
}

pub async fn start(
    heading: &str,
    setup: impl FnOnce(&mut Behaviour),
    edit: impl FnOnce(String) -> String,
) -> Profile {
    init_logs();
    let toml = guide_toml(heading);
    let issuer = value_of(&toml, "issuer");
    let after_scheme = &issuer[issuer.find("://").unwrap() + 3..];
    let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
    let idp = FakeIdp::start_at(path).await;
    let client_id = value_of(&toml, "client_id");
    idp.set(|b| {
        b.client_id = client_id;
        setup(b);
    });
    let upstream = super::upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("revocations.journal");
    let toml = swap(&toml, "\"127.0.0.1:8080\"", "\"127.0.0.1:0\"");
    let toml = swap(
        &toml,
        &format!("\"{issuer}\""),
        &format!("\"{}\"", idp.issuer()),
    );
    let toml = swap(&toml, "127.0.0.1:5001", &upstream.to_string());
    let toml = swap(
        &toml,
        "/var/lib/sealgate/revocations.journal",
        journal.to_str().unwrap(),
    );
    let toml = edit(toml);
    let settings = Settings::from_toml(&toml, &env)
        .unwrap_or_else(|e| panic!("{heading}: the guide's configuration: {e}\n{toml}"));
    let clock = Clock::system();
    let options = Options {
        clock: clock.clone(),
        ..Options::default()
    };
    let running = sealgate::start(settings, options)
        .await
        .unwrap_or_else(|e| panic!("{heading}: sealgate starts: {e}"));
    let actual = format!("http://{}", running.addr);
    Profile {
        h: Harness {
            idp,
            running,
            clock,
            actual,
        },
        _dir: dir,
    }
}
