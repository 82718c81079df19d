//! A simulated user: in a loop until the soak's deadline, logs in through nginx and the IdP
//! (`login_hint=u<id>/c<cycle>`: its own `sub`, a `sid` per login), makes API calls with a
//! think time between them (the short-lived access tokens make sealgate refresh, rotating the
//! refresh token), then logs out (RP-initiated, through nginx), is logged out by the IdP
//! (a back-channel logout POSTed to one instance), or just leaves. Every logged-out cookie is
//! replayed to each instance and through nginx at once after the acknowledgement, and again
//! three seconds later.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Method;
use serde_json::json;

use super::client::{Http, Jar, Reply, Rng};
use super::oracle::{Oracle, Step};
use crate::support::app::{PUBLIC, urlencode};
use crate::support::idp::FakeIdp;

/// What every user shares.
pub struct World {
    pub http: Http,
    pub nginx: SocketAddr,
    pub instances: Vec<SocketAddr>,
    pub idp: FakeIdp,
    pub oracle: Oracle,
    pub deadline: Instant,
    /// Every logged-out cookie with the time its logout was acknowledged.
    pub logged_out: Mutex<Vec<(Jar, Instant)>>,
}

/// A step that did not get its expected answer: the status (`None`: a transport failure).
struct Failed(Option<u16>);

impl World {
    /// Sends one request of `step`; counts it, applies its cookies to `jar`, judges an
    /// unexpected answer.
    #[allow(clippy::too_many_arguments)]
    async fn step(
        &self,
        step: Step,
        to: SocketAddr,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        jar: Option<&mut Jar>,
        body: &str,
        who: &str,
    ) -> Result<Reply, Failed> {
        let sent = Instant::now();
        let r = self
            .http
            .send(to, method, path, headers, jar.as_deref(), body)
            .await;
        if to == self.nginx {
            self.oracle.count_user_request(sent);
        } else {
            self.oracle.count_other_request();
        }
        match r {
            Ok(reply) => {
                if let Some(jar) = jar {
                    jar.apply(&reply.set_cookies);
                }
                if reply.status == step.expected() {
                    return Ok(reply);
                }
                self.oracle
                    .error(step, sent, &reply.status.to_string(), who);
                Err(Failed(Some(reply.status)))
            }
            Err(kind) => {
                self.oracle.error(step, sent, &kind, who);
                Err(Failed(None))
            }
        }
    }

    /// Replays a logged-out cookie to each instance and through nginx: none may serve it, not
    /// even at once after the acknowledgement (a logout is answered only once every instance
    /// applied it or lost its lease: docs/revocation.md).
    pub async fn check_replay(&self, jar: &Jar, acked: Instant, when: &str) {
        let targets = self
            .instances
            .iter()
            .map(|a| (*a, "an instance"))
            .chain([(self.nginx, "nginx")]);
        for (to, name) in targets {
            if self.replay_served(to, jar).await {
                self.oracle.violation(
                    "logged-out cookie served",
                    format!(
                        "a logged-out cookie was served by {name} {to} {when}, {} ms after the \
                         acknowledgement (at {:.1} s)",
                        acked.elapsed().as_millis(),
                        self.oracle.at(Instant::now())
                    ),
                );
            }
        }
    }

    /// One replay of a logged-out cookie: whether `to` served it (2xx).
    async fn replay_served(&self, to: SocketAddr, jar: &Jar) -> bool {
        let r = self
            .http
            .send(
                to,
                Method::GET,
                "/api/replay",
                &[("x-csrf", "1")],
                Some(jar),
                "",
            )
            .await;
        self.oracle.count_other_request();
        self.oracle.count_replay();
        r.is_ok_and(|reply| (200..300).contains(&reply.status))
    }

    /// After an acknowledged logout: replays now and in three seconds (during a Redis fault
    /// too: a logout is acknowledged only once it is shared), and after the run.
    async fn after_logout(self: &Arc<Self>, saved: Jar, acked: Instant) {
        self.logged_out.lock().unwrap().push((saved.clone(), acked));
        self.check_replay(&saved, acked, "at once after the acknowledgement")
            .await;
        let world = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            world
                .check_replay(&saved, acked, "3 s after the acknowledgement")
                .await;
        });
    }
}

/// Runs one user until the deadline.
pub async fn run(world: Arc<World>, id: u64) {
    let mut rng = Rng::new(id + 1);
    tokio::time::sleep(Duration::from_millis(rng.range(0, 2000))).await;
    let mut cycle = 0;
    while Instant::now() < world.deadline {
        cycle += 1;
        let failed = one_cycle(&world, id, cycle, &mut rng).await.is_err();
        if failed {
            // Not a hot loop while something is down.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Login, API calls, and an ending.
async fn one_cycle(w: &Arc<World>, id: u64, cycle: u64, rng: &mut Rng) -> Result<(), Failed> {
    let hint = format!("u{id}/c{cycle}");
    let who = format!("user {hint}");
    let mut jar = Jar::default();
    let navigate = [("sec-fetch-mode", "navigate")];
    let login = format!("/bff/login?returnUrl=%2F&login_hint={}", urlencode(&hint));
    let r = w
        .step(
            Step::Login,
            w.nginx,
            Method::GET,
            &login,
            &navigate,
            Some(&mut jar),
            "",
            &who,
        )
        .await?;
    let authorize = r.location.unwrap_or_default();
    let sent = Instant::now();
    let r = w.http.get_url(&authorize).await;
    w.oracle.count_other_request();
    let callback = match r {
        Ok(r) if r.status == 302 => r.location.unwrap_or_default(),
        Ok(r) => {
            w.oracle
                .error(Step::Authorize, sent, &r.status.to_string(), &who);
            return Err(Failed(Some(r.status)));
        }
        Err(kind) => {
            w.oracle.error(Step::Authorize, sent, &kind, &who);
            return Err(Failed(None));
        }
    };
    let callback = callback
        .strip_prefix(PUBLIC)
        .unwrap_or(&callback)
        .to_owned();
    w.step(
        Step::Callback,
        w.nginx,
        Method::GET,
        &callback,
        &navigate,
        Some(&mut jar),
        "",
        &who,
    )
    .await?;
    if !jar.has_session() {
        w.oracle.violation(
            "callback set no session",
            format!("{who}: no session cookie"),
        );
        return Err(Failed(None));
    }
    w.oracle.count_login();

    let calls = rng.range(3, 30);
    for i in 0..calls {
        tokio::time::sleep(Duration::from_millis(rng.range(50, 400))).await;
        if Instant::now() >= w.deadline {
            break;
        }
        let path = format!("/api/u{id}/{i}");
        let r = w
            .step(
                Step::Api,
                w.nginx,
                Method::GET,
                &path,
                &[("x-csrf", "1")],
                Some(&mut jar),
                "",
                &who,
            )
            .await;
        if let Err(Failed(Some(401))) = r {
            // The session is gone (already counted as a violation): start again.
            return r.map(|_| ());
        }
    }

    match rng.range(0, 100) {
        0..45 => {
            let saved = jar.clone();
            w.step(
                Step::Logout,
                w.nginx,
                Method::POST,
                "/bff/logout",
                &[("x-csrf", "1")],
                Some(&mut jar),
                "",
                &who,
            )
            .await?;
            w.oracle.count_logout(false);
            w.after_logout(saved, Instant::now()).await;
        }
        45..80 => back_channel_logout(w, id, &hint, &who, jar, rng).await?,
        _ => {} // leaves: the cookie simply is not used again
    }
    Ok(())
}

/// The IdP logs this login out: a logout token naming its `sub` and `sid`, POSTed to one
/// instance (to the next one when it cannot connect, as an IdP retries).
async fn back_channel_logout(
    w: &Arc<World>,
    id: u64,
    hint: &str,
    who: &str,
    jar: Jar,
    rng: &mut Rng,
) -> Result<(), Failed> {
    let token = w.idp.logout_token(|c| {
        c.insert("sub".into(), json!(format!("u{id}")));
        c.insert("sid".into(), json!(hint));
    });
    let form = format!("logout_token={}", urlencode(&token));
    let first = usize::try_from(rng.range(0, 3)).unwrap();
    for k in 0..w.instances.len() {
        let to = w.instances[(first + k) % w.instances.len()];
        let r = w
            .step(
                Step::BackChannel,
                to,
                Method::POST,
                "/bff/backchannel-logout",
                &[("content-type", "application/x-www-form-urlencoded")],
                None,
                &form,
                who,
            )
            .await;
        match r {
            Ok(_) => {
                w.oracle.count_logout(true);
                w.after_logout(jar, Instant::now()).await;
                return Ok(());
            }
            Err(Failed(None)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Failed(None))
}
