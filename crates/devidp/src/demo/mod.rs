//! What `sealgate demo` runs besides sealgate: the development IdP, the demo API, the demo page,
//! and sealgate's configuration for them.
//!
//! NOT FOR PRODUCTION: the development IdP signs in anyone who types a name. The demo exists so
//! that a new user sees the whole flow within a minute of cloning: log in, see `/bff/user`,
//! call an API that echoes the claims of the bearer token it received (proof the token reached
//! the API and not the browser), log out.
//!
//! The demo uses only what a real deployment configures: [`Demo::config`] is a TOML file's
//! text. The page is served by sealgate's `[static]` feature from a fresh temporary directory
//! (removed when the [`Demo`] is dropped), which also holds the `[revocation]` journal, so the
//! demo's logouts are journaled as in production and no "memory only" warning greets a new user.

mod favicon;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;

use tempfile::TempDir;

use crate::idp::{DevIdp, DevIdpConfig};
use crate::random::{RandomError, key_base64, random_token};

/// Client id the demo registers at its IdP.
pub const CLIENT_ID: &str = "sealgate-demo";

/// The environment variable [`Demo::secret`] answers with the client secret.
const CLIENT_SECRET_VAR: &str = "DEMO_CLIENT_SECRET";
/// The environment variable [`Demo::secret`] answers with the session key.
const SESSION_KEY_VAR: &str = "DEMO_SESSION_KEY";

/// The demo page's files, written into `[static] dir`.
const SITE: [(&str, &str); 3] = [
    ("index.html", include_str!("index.html")),
    ("demo.js", include_str!("demo.js")),
    ("demo.css", include_str!("demo.css")),
];

/// A running development IdP and demo API, the demo page on disk, and sealgate's
/// configuration for them. Dropping it removes the page and the journal.
pub struct Demo {
    /// The URL to open (`http://localhost:PORT`).
    pub public: String,
    /// The development IdP.
    pub idp: DevIdp,
    /// The demo API's address.
    pub api: SocketAddr,
    config: String,
    client_secret: String,
    session_key: String,
    dir: TempDir,
}

impl fmt::Debug for Demo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Demo")
            .field("public", &self.public)
            .field("idp", &self.idp)
            .field("api", &self.api)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl Demo {
    /// Starts the IdP on `idp_addr` and the API on `api_addr` for a sealgate that will listen
    /// on `listen`, and writes the page into a fresh temporary directory.
    ///
    /// # Errors
    /// When a port is taken, the OS CSPRNG fails, or the directory cannot be written.
    pub async fn start(
        listen: SocketAddr,
        idp_addr: SocketAddr,
        api_addr: SocketAddr,
    ) -> io::Result<Demo> {
        let public = format!("http://localhost:{}", listen.port());
        // Fresh secrets every run, from the OS CSPRNG; nothing to configure, nothing reused.
        let client_secret = random_token::<32>().map_err(random_failed)?;
        let session_key = key_base64().map_err(random_failed)?;
        let dir = write_site()?;
        let idp = DevIdp::start(
            idp_addr,
            DevIdpConfig {
                client_id: CLIENT_ID.into(),
                client_secret: client_secret.clone(),
                redirect_uri: format!("{public}/bff/callback"),
                post_logout_redirect_uri: format!("{public}/"),
            },
        )
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("development IdP on {idp_addr}: {e}")))?;
        let api = crate::api::start(api_addr, idp.issuer(), idp.decoding_key())
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("demo API on {api_addr}: {e}")))?;
        let config = config_toml(&Endpoints {
            listen,
            public: &public,
            issuer: &idp.issuer(),
            api,
            site: &dir.path().join("site"),
            journal: &dir.path().join("revocations.journal"),
        })?;
        Ok(Demo {
            public,
            idp,
            api,
            config,
            client_secret,
            session_key,
            dir,
        })
    }

    /// sealgate's configuration for this demo, as the text of a TOML file. Its secrets are
    /// `env:` references that [`Demo::secret`] answers.
    pub fn config(&self) -> &str {
        &self.config
    }

    /// The value of the environment variable `name` that [`Demo::config`] refers to.
    pub fn secret(&self, name: &str) -> Option<String> {
        match name {
            CLIENT_SECRET_VAR => Some(self.client_secret.clone()),
            SESSION_KEY_VAR => Some(self.session_key.clone()),
            _ => None,
        }
    }

    /// The temporary directory holding the page (`site/`) and the revocation journal.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn random_failed(error: RandomError) -> io::Error {
    io::Error::other(error)
}

/// A fresh temporary directory with the page in `site/`.
fn write_site() -> io::Result<TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("sealgate-demo-")
        .tempdir()?;
    let site = dir.path().join("site");
    std::fs::create_dir(&site)?;
    for (name, text) in SITE {
        std::fs::write(site.join(name), text)?;
    }
    // Browsers ask for it on their own; a 404 in the log would look like a problem.
    std::fs::write(site.join("favicon.ico"), favicon::ico())?;
    Ok(dir)
}

/// Where everything the configuration names is.
struct Endpoints<'a> {
    listen: SocketAddr,
    public: &'a str,
    issuer: &'a str,
    api: SocketAddr,
    site: &'a Path,
    journal: &'a Path,
}

/// The demo's configuration: what a real deployment writes in its TOML file.
fn config_toml(at: &Endpoints<'_>) -> io::Result<String> {
    let Endpoints {
        listen,
        public,
        issuer,
        api,
        ..
    } = at;
    let site = toml_path(at.site)?;
    let journal = toml_path(at.journal)?;
    Ok(format!(
        r#"
[server]
listen = "{listen}"
public_url = "{public}"
[oidc]
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "env:{CLIENT_SECRET_VAR}"
scopes = ["openid", "profile", "email", "offline_access"]
post_logout_redirect_uri = "{public}/"
[session]
keys = ["env:{SESSION_KEY_VAR}"]
[bff]
allowed_origins = ["{public}"]
[static]
dir = {site}
[revocation]
journal = {journal}
[[routes]]
prefix = "/api"
upstream = "http://{api}"
token = "user"
"#
    ))
}

/// `path` as a TOML basic string. A JSON string is one (the escapes JSON writes are a subset
/// of TOML's), which keeps backslashes and quotes in temporary paths safe.
fn toml_path(path: &Path) -> io::Result<String> {
    let text = path.to_str().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the temporary directory {path:?} is not UTF-8"),
        )
    })?;
    serde_json::to_string(text).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_toml_strings() {
        assert_eq!(
            toml_path(Path::new(r#"C:\tmp\a "b""#)).unwrap(),
            r#""C:\\tmp\\a \"b\"""#
        );
    }

    #[test]
    fn the_site_holds_the_page_its_assets_and_an_icon() {
        let dir = write_site().unwrap();
        let site = dir.path().join("site");
        let index = std::fs::read_to_string(site.join("index.html")).unwrap();
        assert!(index.contains("not for production"));
        // The default `[static]` CSP allows no inline script or style: everything is a file.
        assert!(!index.contains("<script>") && !index.contains("<style>"));
        for asset in ["/demo.js", "/demo.css", "/favicon.ico"] {
            assert!(index.contains(asset), "{asset} is linked");
            assert!(site.join(&asset[1..]).is_file(), "{asset} is written");
        }
        let path = dir.path().to_owned();
        drop(dir);
        assert!(!path.exists(), "dropping the directory removes it");
    }

    #[test]
    fn the_config_serves_the_site_and_journals_revocations() {
        let config = config_toml(&Endpoints {
            listen: "127.0.0.1:8080".parse().unwrap(),
            public: "http://localhost:8080",
            issuer: "http://127.0.0.1:8081",
            api: "127.0.0.1:8082".parse().unwrap(),
            site: Path::new("/tmp/x/site"),
            journal: Path::new("/tmp/x/revocations.journal"),
        })
        .unwrap();
        assert!(config.contains("[static]\ndir = \"/tmp/x/site\"\n"));
        assert!(config.contains("[revocation]\njournal = \"/tmp/x/revocations.journal\"\n"));
        assert!(config.contains("client_secret = \"env:DEMO_CLIENT_SECRET\""));
        assert!(config.contains("upstream = \"http://127.0.0.1:8082\""));
    }
}
