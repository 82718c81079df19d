//! `[cluster]`: one server, Sentinel or a Redis Cluster, TLS and an ACL user.

use super::super::{RedisTopology, Settings};
use super::{EXAMPLE, env};

fn with(table: &str) -> Result<Settings, String> {
    Settings::from_toml(&format!("{EXAMPLE}\n[cluster]\n{table}"), &env).map_err(|e| e.to_string())
}

/// A readable file with `text` in it (a password, a PEM stand-in).
fn file(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("sealgate-cluster-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn sentinel_and_cluster_topologies_with_tls_and_an_acl_user() {
    let pw = file("pw", "s3cret-redis\n");
    let ca = file("ca.pem", "stand-in");
    let s = with(&format!(
        "sentinels = [\"10.0.0.1:26379\", \"[::1]:26380\"]\nsentinel_master = \"mymaster\"\n\
         tls = true\nca_file = \"{ca}\"\nusername = \"sealgate\"\npassword = \"file:{pw}\"\n\
         min_replicas = 1"
    ))
    .unwrap();
    let c = s.cluster.unwrap();
    match &c.topology {
        RedisTopology::Sentinel {
            sentinels, master, ..
        } => {
            assert_eq!(sentinels, &["10.0.0.1:26379", "[::1]:26380"]);
            assert_eq!(master, "mymaster");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.username.as_deref(), Some("sealgate"));
    assert_eq!(c.password.as_ref().unwrap().expose(), "s3cret-redis");
    assert!(c.tls.as_ref().unwrap().ca_file.is_some());
    assert_eq!(c.min_replicas, Some(1));
    let shown = format!("{c:?}");
    assert!(!shown.contains("s3cret-redis"), "{shown}");

    let c = with("cluster_nodes = [\"127.0.0.1:7000\", \"redis-1.internal:7001\"]")
        .unwrap()
        .cluster
        .unwrap();
    assert!(matches!(c.topology, RedisTopology::Cluster { ref nodes } if nodes.len() == 2));
    assert!(c.tls.is_none());
    let c = with("redis_url = \"rediss://redis.internal:6380/0\"")
        .unwrap()
        .cluster
        .unwrap();
    assert!(c.tls.is_some(), "rediss:// is TLS with the system's roots");
}

#[test]
fn mistakes_are_refused_with_their_key_and_no_secret() {
    let pw = file("pw2", "hunter2");
    for (table, key) in [
        ("", "exactly one of redis_url, sentinels, cluster_nodes"),
        (
            "redis_url = \"redis://127.0.0.1/0\"\ncluster_nodes = [\"127.0.0.1:7000\"]",
            "exactly one",
        ),
        (
            "sentinels = [\"127.0.0.1:26379\"]",
            "cluster.sentinel_master",
        ),
        (
            "redis_url = \"redis://127.0.0.1/0\"\nsentinel_master = \"m\"",
            "cluster.sentinel_master",
        ),
        ("cluster_nodes = []", "cluster.cluster_nodes"),
        ("cluster_nodes = [\"127.0.0.1\"]", "cluster.cluster_nodes"),
        ("cluster_nodes = [\"127.0.0.1:0\"]", "cluster.cluster_nodes"),
        ("cluster_nodes = [\"::1:7000\"]", "cluster.cluster_nodes"),
        (
            "redis_url = \"redis://127.0.0.1/0\"\npassword = \"hunter2\"",
            "cluster.password",
        ),
        (
            "redis_url = \"redis://127.0.0.1/0\"\nusername = \"u\"",
            "cluster.password",
        ),
        (
            "redis_url = \"redis://127.0.0.1/0\"\nca_file = \"/etc/hosts\"",
            "cluster.ca_file",
        ),
        (
            "redis_url = \"redis://127.0.0.1/0\"\ntls = true",
            "cluster.tls",
        ),
        (
            "cluster_nodes = [\"127.0.0.1:7000\"]\ntls = true\nclient_cert = \"/etc/hosts\"",
            "cluster.client_key",
        ),
        (
            "redis_url = \"redis://127.0.0.1/0\"\nmin_replicas = 99",
            "cluster.min_replicas",
        ),
        (
            "redis_url = \"rediss://127.0.0.1/0#insecure\"",
            "cluster.redis_url",
        ),
    ] {
        let err = with(table).unwrap_err();
        assert!(err.contains(key), "{table}: {err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
    // A password in the URL and the password key: one of them.
    let url = file("url", "redis://:hunter2@127.0.0.1/0");
    let err = with(&format!(
        "redis_url = \"file:{url}\"\npassword = \"file:{pw}\""
    ))
    .unwrap_err();
    assert!(err.contains("cluster.password"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn a_sentinel_user_without_a_password_is_refused() {
    let e = with(
        "sentinels = [\"10.0.0.1:26379\"]\nsentinel_master = \"mymaster\"\n\
         sentinel_username = \"watcher\"",
    )
    .unwrap_err();
    assert!(
        e.contains("cluster.sentinel_password") && e.contains("required with"),
        "{e}"
    );
    let pw = file("spw", "sentinel-pw\n");
    assert!(
        with(&format!(
            "sentinels = [\"10.0.0.1:26379\"]\nsentinel_master = \"mymaster\"\n\
             sentinel_username = \"watcher\"\nsentinel_password = \"file:{pw}\""
        ))
        .is_ok()
    );
}
