//! Redis as it is operated, for the cluster tests: TLS with a test CA (made with the `openssl`
//! CLI), an ACL user, Sentinel, a Redis Cluster. Every server is a `redis-server` child on
//! loopback ports, killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scratch directory, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "sealgate-{name}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(program: &str, args: &[&str], dir: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A test CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
pub fn make_certs(dir: &Path, ca: &str) {
    let key = |name: &str| {
        run(
            "openssl",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                name,
            ],
            dir,
        )
    };
    key(&format!("{ca}.key"));
    run(
        "openssl",
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.crt"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca}"),
        ],
        dir,
    );
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        key(&format!("{name}.key"));
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        run(
            "openssl",
            &[
                "req",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
            dir,
        );
        run(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.crt"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-out",
                &format!("{name}.crt"),
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ],
            dir,
        );
    }
}

/// The arguments of a test `redis-server` on `port` (a number, or `{port}` for [`Node::start`]):
/// loopback only, no persistence, then `extra` (later arguments override earlier ones, so
/// `extra` may hold `--port 0 --tls-port {port}`).
pub fn server_args(port: &str, extra: &[&str]) -> Vec<String> {
    [
        "--port",
        port,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .iter()
    .chain(extra)
    .map(|s| (*s).to_owned())
    .collect()
}

/// `redis-cli` with `options` (TLS, user) against loopback `port`, run in `dir`; its output,
/// errors included.
pub fn redis_cli(port: u16, options: &[&str], args: &[&str], dir: &Path) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(options)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("redis-cli");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One `redis-server` (or sentinel) with fixed arguments, restartable on its port.
pub struct Node {
    pub port: u16,
    args: Vec<String>,
    /// `redis-cli` arguments that reach it (TLS, user).
    cli: Vec<String>,
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// Starts `redis-server ARGS` in `dir` (`{port}` in `args` is replaced by its port).
    pub fn start(dir: &Path, port: u16, args: &[String], cli: &[String]) -> Node {
        let args = args
            .iter()
            .map(|a| a.replace("{port}", &port.to_string()))
            .collect();
        let mut n = Node {
            port,
            args,
            cli: cli.to_vec(),
            dir: dir.to_path_buf(),
            child: None,
        };
        n.restart();
        n
    }

    /// A plain (or `--tls`) server: no persistence, loopback only.
    pub fn server(dir: &Path, extra: &[&str], cli: &[&str]) -> Node {
        let args = server_args("{port}", extra);
        let cli: Vec<String> = cli.iter().map(|s| (*s).to_owned()).collect();
        Node::start(dir, free_port(), &args, &cli)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// (Re)starts it: empty, as after losing its data.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(&self.args)
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        self.child = Some(child);
        let started = Instant::now();
        while !self.cli(&["PING"]).contains("PONG") {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not answer"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis-cli` against it; its output (errors included).
    pub fn cli(&self, args: &[&str]) -> String {
        let options: Vec<&str> = self.cli.iter().map(String::as_str).collect();
        redis_cli(self.port, &options, args, &self.dir)
    }

    /// The revocation keys it holds.
    pub fn revocation_keys(&self) -> usize {
        self.cli(&["--scan", "--pattern", "sealgate:rev:*"])
            .lines()
            .filter(|l| !l.is_empty())
            .count()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until `f` holds, up to `within`.
pub fn wait_for(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// TLS-only arguments for a server (`{port}` is its TLS port), with certificates from
/// [`make_certs`] with "ca" in `dir`; with `client_certs`, clients must present a certificate
/// (and the server presents `client.crt` when it connects to another: replication, cluster bus).
pub fn tls_args(dir: &Path, client_certs: bool) -> Vec<String> {
    let path = |n: &str| dir.join(n).display().to_string();
    let mut args: Vec<String> = [
        "--port",
        "0",
        "--tls-port",
        "{port}",
        "--tls-cert-file",
        &path("server.crt"),
        "--tls-key-file",
        &path("server.key"),
        "--tls-ca-cert-file",
        &path("ca.crt"),
        "--tls-replication",
        "yes",
        "--tls-auth-clients",
        if client_certs { "yes" } else { "no" },
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if client_certs {
        args.extend(
            [
                "--tls-client-cert-file",
                &path("client.crt"),
                "--tls-client-key-file",
                &path("client.key"),
            ]
            .map(str::to_owned),
        );
    }
    args
}

/// The `redis-cli` arguments matching [`tls_args`].
pub fn tls_cli(dir: &Path, client_certs: bool) -> Vec<String> {
    let path = |n: &str| dir.join(n).display().to_string();
    let mut cli = vec!["--tls".to_owned(), "--cacert".to_owned(), path("ca.crt")];
    if client_certs {
        cli.extend(["--cert".to_owned(), path("client.crt")]);
        cli.extend(["--key".to_owned(), path("client.key")]);
    }
    cli
}

/// Server arguments for an ACL user with every permission, the default user off.
pub fn acl_args(user: &str, password: &str) -> Vec<String> {
    let mut args: Vec<String> = ["--user", "default", "off", "--user", user, "on"]
        .map(str::to_owned)
        .to_vec();
    args.extend([
        format!(">{password}"),
        "~*".into(),
        "&*".into(),
        "+@all".into(),
    ]);
    args
}

/// The `redis-cli` arguments of that user.
pub fn acl_cli(user: &str, password: &str) -> Vec<String> {
    ["--user", user, "--pass", password, "--no-auth-warning"]
        .map(str::to_owned)
        .to_vec()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The ACL users of a [`SentinelSet`]: one on the data nodes (also used for replication and by
/// the sentinel), one on the sentinel.
pub struct SentinelAcl<'a> {
    pub user: &'a str,
    pub password: &'a str,
    pub sentinel_user: &'a str,
    pub sentinel_password: &'a str,
}

/// A primary, one replica and one sentinel watching them (fast timeouts).
pub struct SentinelSet {
    pub primary: Node,
    pub replica: Node,
    pub sentinel: Node,
}

impl SentinelSet {
    pub fn start(dir: &Path) -> SentinelSet {
        Self::start_with(dir, false)
    }

    /// With `tls`, everything speaks TLS only (certificates from [`make_certs`] with "ca").
    pub fn start_with(dir: &Path, tls: bool) -> SentinelSet {
        Self::start_full(dir, tls, None)
    }

    /// With ACL users on the data nodes and on the sentinel (the default users off).
    pub fn start_acl(dir: &Path, acl: &SentinelAcl) -> SentinelSet {
        Self::start_full(dir, false, Some(acl))
    }

    fn start_full(dir: &Path, tls: bool, acl: Option<&SentinelAcl>) -> SentinelSet {
        let path = |n: &str| dir.join(n).display().to_string();
        let (mut args, mut cli) = if tls {
            (tls_args(dir, false), tls_cli(dir, false))
        } else {
            (Vec::new(), Vec::new())
        };
        let sentinel_cli = match acl {
            Some(acl) => {
                let mut c = cli.clone();
                c.extend(acl_cli(acl.sentinel_user, acl.sentinel_password));
                args.extend(acl_args(acl.user, acl.password));
                args.extend(
                    ["--masteruser", acl.user, "--masterauth", acl.password].map(str::to_owned),
                );
                cli.extend(acl_cli(acl.user, acl.password));
                c
            }
            None => cli.clone(),
        };
        let primary = Node::server(dir, &strs(&args), &strs(&cli));
        let primary_port = primary.port.to_string();
        let mut replica_args = args.clone();
        replica_args.extend([
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            primary_port,
        ]);
        let replica = Node::server(dir, &strs(&replica_args), &strs(&cli));
        wait_for(Duration::from_secs(10), "replica in sync", || {
            primary
                .cli(&["INFO", "replication"])
                .contains("state=online")
        });
        let port = free_port();
        let conf = dir.join(format!("sentinel-{port}.conf"));
        let listen = if tls {
            let (cert, key, ca) = (path("server.crt"), path("server.key"), path("ca.crt"));
            format!(
                "port 0\ntls-port {port}\ntls-cert-file {cert}\ntls-key-file {key}\n\
                 tls-ca-cert-file {ca}\ntls-auth-clients no\ntls-replication yes\n"
            )
        } else {
            format!("port {port}\n")
        };
        let auth = match acl {
            Some(a) => format!(
                "user default off\nuser {} on >{} ~* &* +@all\n\
                 sentinel auth-user mymaster {}\nsentinel auth-pass mymaster {}\n",
                a.sentinel_user, a.sentinel_password, a.user, a.password
            ),
            None => String::new(),
        };
        std::fs::write(
            &conf,
            format!(
                "{listen}bind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds mymaster 500\n\
                 sentinel failover-timeout mymaster 2000\n{auth}",
                primary.port
            ),
        )
        .unwrap();
        let sentinel = Node::start(
            dir,
            port,
            &[conf.display().to_string(), "--sentinel".into()],
            &sentinel_cli,
        );
        wait_for(Duration::from_secs(10), "sentinel sees the replica", || {
            sentinel
                .cli(&["SENTINEL", "replicas", "mymaster"])
                .contains(&replica.port.to_string())
        });
        SentinelSet {
            primary,
            replica,
            sentinel,
        }
    }
}

/// Three primaries, no replicas, all slots assigned.
pub struct RedisCluster {
    pub nodes: Vec<Node>,
}

impl RedisCluster {
    pub fn start(dir: &Path) -> RedisCluster {
        Self::start_with(dir, &[], &[])
    }

    /// Over TLS only (cluster bus included, client certificates required) with the ACL user
    /// `user` (the default user off); certificates from [`make_certs`] with "ca" in `dir`.
    pub fn start_tls(dir: &Path, user: &str, password: &str) -> RedisCluster {
        let mut args = tls_args(dir, true);
        args.extend(["--tls-cluster", "yes"].map(str::to_owned));
        args.extend(acl_args(user, password));
        let mut cli = tls_cli(dir, true);
        cli.extend(acl_cli(user, password));
        Self::start_with(dir, &strs(&args), &strs(&cli))
    }

    /// Each node gets `extra` arguments and is reached with the `cli` arguments.
    fn start_with(dir: &Path, extra: &[&str], cli: &[&str]) -> RedisCluster {
        let nodes: Vec<Node> = (0..3)
            .map(|i| {
                let bus = free_port().to_string();
                let conf = format!("nodes-{i}.conf");
                let mut args = vec![
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &conf,
                    "--cluster-port",
                    &bus,
                    "--cluster-node-timeout",
                    "1000",
                ];
                args.extend(extra);
                Node::server(dir, &args, cli)
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut args: Vec<&str> = cli.to_vec();
        args.extend(["--cluster", "create"]);
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        run("redis-cli", &args, dir);
        let c = RedisCluster { nodes };
        c.wait_ok();
        c
    }
    /// Waits until every running node reports `cluster_state:ok`.
    pub fn wait_ok(&self) {
        wait_for(Duration::from_secs(15), "cluster_state:ok", || {
            self.nodes
                .iter()
                .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        });
    }

    pub fn seeds(&self) -> String {
        let list: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("\"127.0.0.1:{}\"", n.port))
            .collect();
        list.join(", ")
    }
}
