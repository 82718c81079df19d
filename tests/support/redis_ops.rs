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
        let mut args: Vec<String> = [
            "--port",
            "{port}",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
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
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(&self.cli)
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("redis-cli");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
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
        let path = |n: &str| dir.join(n).display().to_string();
        let (cert, key, ca) = (path("server.crt"), path("server.key"), path("ca.crt"));
        let tls_args: Vec<&str> = if tls {
            vec![
                "--port",
                "0",
                "--tls-port",
                "{port}",
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-ca-cert-file",
                &ca,
                "--tls-auth-clients",
                "no",
                "--tls-replication",
                "yes",
            ]
        } else {
            Vec::new()
        };
        let cli: Vec<&str> = if tls {
            vec!["--tls", "--cacert", &ca]
        } else {
            Vec::new()
        };
        let primary = Node::server(dir, &tls_args, &cli);
        let primary_port = primary.port.to_string();
        let mut replica_args = tls_args.clone();
        replica_args.extend(["--replicaof", "127.0.0.1", &primary_port]);
        let replica = Node::server(dir, &replica_args, &cli);
        wait_for(Duration::from_secs(10), "replica in sync", || {
            primary
                .cli(&["INFO", "replication"])
                .contains("state=online")
        });
        let port = free_port();
        let conf = dir.join(format!("sentinel-{port}.conf"));
        let listen = if tls {
            format!(
                "port 0\ntls-port {port}\ntls-cert-file {cert}\ntls-key-file {key}\n\
                 tls-ca-cert-file {ca}\ntls-auth-clients no\ntls-replication yes\n"
            )
        } else {
            format!("port {port}\n")
        };
        std::fs::write(
            &conf,
            format!(
                "{listen}bind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds mymaster 500\n\
                 sentinel failover-timeout mymaster 2000\n",
                primary.port
            ),
        )
        .unwrap();
        let cli: Vec<String> = cli.iter().map(|s| (*s).to_owned()).collect();
        let sentinel = Node::start(
            dir,
            port,
            &[conf.display().to_string(), "--sentinel".into()],
            &cli,
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
        let nodes: Vec<Node> = (0..3)
            .map(|i| {
                let bus = free_port().to_string();
                let conf = format!("nodes-{i}.conf");
                Node::server(
                    dir,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        &conf,
                        "--cluster-port",
                        &bus,
                        "--cluster-node-timeout",
                        "1000",
                    ],
                    &[],
                )
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut args = vec!["--cluster", "create"];
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
