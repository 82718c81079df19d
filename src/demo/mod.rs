//! `sealgate demo`: sealgate with an embedded development IdP and a demo API, on loopback.
//!
//! NOT FOR PRODUCTION: the development IdP signs in anyone who types a name. The demo exists so
//! that a new user sees the whole flow within a minute of cloning: log in, see `/bff/user`,
//! call an API that echoes the claims of the bearer token it received (proof the token reached
//! the API and not the browser), log out.

pub mod api;
pub mod idp;

use std::net::{Ipv4Addr, SocketAddr};

use crate::config::Settings;
use crate::seal::keys::generate_key_base64;
use crate::server::{self, Options};

/// The demo page served at `/`.
pub const PAGE: &str = include_str!("page.html");

/// Client id the demo registers at its IdP.
const CLIENT_ID: &str = "sealgate-demo";

/// The demo's configuration: what a real deployment writes in its TOML file.
pub fn demo_config(listen: SocketAddr, public: &str, issuer: &str, api: SocketAddr) -> String {
    format!(
        r#"
[server]
listen = "{listen}"
public_url = "{public}"
[oidc]
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "env:DEMO_CLIENT_SECRET"
scopes = ["openid", "profile", "email", "offline_access"]
post_logout_redirect_uri = "{public}/"
[session]
keys = ["env:DEMO_SESSION_KEY"]
[bff]
allowed_origins = ["{public}"]
[[routes]]
prefix = "/api"
upstream = "http://{api}"
token = "user"
"#
    )
}

/// A running demo.
#[derive(Debug)]
pub struct Demo {
    /// The URL to open (`http://localhost:PORT`).
    pub public: String,
    /// The development IdP.
    pub idp: idp::DevIdp,
    /// The demo API's address.
    pub api: SocketAddr,
    /// sealgate.
    pub running: server::Running,
}

/// Starts the demo: sealgate on `listener`, the IdP on `idp_addr`, the API on `api_addr`.
///
/// # Errors
/// When a port is taken or a component fails to start.
pub async fn start(
    listener: std::net::TcpListener,
    idp_addr: SocketAddr,
    api_addr: SocketAddr,
) -> Result<Demo, Box<dyn std::error::Error>> {
    let listen = listener.local_addr()?;
    let public = format!("http://localhost:{}", listen.port());
    // Fresh secrets every run, from the OS CSPRNG; nothing to configure, nothing reused.
    let client_secret = generate_key_base64()?;
    let session_key = generate_key_base64()?;
    let idp = idp::DevIdp::start(
        idp_addr,
        idp::DevIdpConfig {
            client_id: CLIENT_ID.into(),
            client_secret: client_secret.clone(),
            redirect_uri: format!("{public}/bff/callback"),
            post_logout_redirect_uri: format!("{public}/"),
        },
    )
    .await
    .map_err(|e| format!("development IdP on {idp_addr}: {e}"))?;
    let api = api::start(api_addr, idp.issuer(), idp.decoding_key())
        .await
        .map_err(|e| format!("demo API on {api_addr}: {e}"))?;
    let env = move |name: &str| match name {
        "DEMO_CLIENT_SECRET" => Some(client_secret.clone()),
        "DEMO_SESSION_KEY" => Some(session_key.clone()),
        _ => None,
    };
    let settings = Settings::from_toml(&demo_config(listen, &public, &idp.issuer(), api), &env)?;
    let running = server::start(
        settings,
        Options {
            home_page: Some(PAGE),
            listener: Some(listener),
            ..Options::default()
        },
    )
    .await?;
    Ok(Demo {
        public,
        idp,
        api,
        running,
    })
}

/// Runs the demo on `port` (IdP on `port + 1`, API on `port + 2`) until Ctrl-C.
///
/// # Errors
/// When a port is taken or a component fails to start.
pub async fn run(port: u16) -> Result<(), Box<dyn std::error::Error>> {
    let at = |n: u16| {
        port.checked_add(n)
            .map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p)))
            .ok_or("port too high for the demo (it uses port, port+1 and port+2)")
    };
    let listener = std::net::TcpListener::bind(at(0)?)
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e} (try --port)"))?;
    let demo = start(listener, at(1)?, at(2)?).await?;
    println!();
    println!("  sealgate demo is running. Open:  {}/", demo.public);
    println!();
    println!(
        "  development IdP (NOT FOR PRODUCTION): {}",
        demo.idp.issuer()
    );
    println!(
        "  demo API (behind sealgate at /api):   http://{}",
        demo.api
    );
    println!("  Press Ctrl-C to stop.");
    println!();
    demo.running.until_signal().await;
    Ok(())
}
