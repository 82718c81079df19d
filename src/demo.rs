//! `sealgate demo`: sealgate with the development IdP and the demo API (the `devidp` crate),
//! on loopback. The demo's sealgate is configured like any deployment, from TOML text.

use std::net::{Ipv4Addr, SocketAddr};

use devidp::demo::Demo;
use sealgate::Options;
use sealgate::Settings;

/// Runs the demo on `port` (IdP on `port + 1`, API on `port + 2`) until Ctrl-C.
pub(crate) async fn run(port: u16) -> Result<(), Box<dyn std::error::Error>> {
    let at = |n: u16| {
        port.checked_add(n)
            .map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p)))
            .ok_or("port too high for the demo (it uses port, port+1 and port+2)")
    };
    let listener = std::net::TcpListener::bind(at(0)?)
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e} (try --port)"))?;
    let demo = Demo::start(listener.local_addr()?, at(1)?, at(2)?).await?;
    let settings = Settings::from_toml(demo.config(), &|name: &str| demo.secret(name))?;
    let running = sealgate::start(
        settings,
        Options {
            listener: Some(listener),
            ..Options::default()
        },
    )
    .await?;
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
    running.until_signal().await;
    // Only now: the page and the journal are in its directory.
    drop(demo);
    Ok(())
}
