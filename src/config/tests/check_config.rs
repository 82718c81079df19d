//! `check-config`: one pass finds every problem, each once with its line, and what `serve` will
//! open is checked offline.

use std::path::Path;

use super::super::check::{Report, check_text};
use super::super::{Place, Settings};
use super::{EXAMPLE, env};

fn check(text: &str) -> Report {
    check_text(Path::new("sealgate.toml"), text, &env, &[])
}

/// The 1-based line of the first line of `text` starting with `start`.
fn line(text: &str, start: &str) -> Place {
    Place::Line(text.lines().position(|l| l.starts_with(start)).unwrap() + 1)
}

/// The one error naming `key`; fails when there is none or more than one.
fn error<'a>(report: &'a Report, key: &str) -> &'a super::super::Problem {
    let found: Vec<_> = report
        .errors
        .iter()
        .filter(|p| p.error.to_string().contains(key))
        .collect();
    assert_eq!(found.len(), 1, "{key}: {:#?}", report.errors);
    found[0]
}

#[test]
fn one_pass_reports_every_problem_once_with_its_line() {
    let text = format!(
        "{}\n[log]\nformat = 5\n[cluster]\nredis_url = \"redis://:hunter2@127.0.0.1/0\"\n[bogus]\n",
        EXAMPLE
            .replace(r#"listen = "127.0.0.1:8080""#, r#"listen = "nowhere""#)
            .replace(r#"idle_timeout = "20m""#, r#"idle_timeout = "9h""#)
            .replace("login_timeout", "login_timeuot")
            .replace("http://127.0.0.1:5001", "ftp://127.0.0.1:5001")
    );
    let report = check(&text);
    for (key, start) in [
        ("server.listen", "listen ="),
        ("session.idle_timeout", "idle_timeout"),
        ("login_timeuot", "login_timeuot"),
        ("routes[0].upstream", "upstream ="),
        ("log.format", "format ="),
        ("cluster.redis_url", "redis_url ="),
        ("`bogus`", "[bogus]"),
    ] {
        let problem = error(&report, key);
        assert_eq!(problem.place, line(&text, start), "{problem}");
    }
    assert_eq!(report.errors.len(), 7, "{:#?}", report.errors);
    assert_eq!(report.summary(), "sealgate.toml: 7 errors");
    assert!(report.warnings.is_empty(), "no warnings with errors");
    let all = format!("{:?}", report.errors);
    assert!(!all.contains("hunter2"), "{all}");

    // Loading stops at the first of the same problems.
    let first = Settings::from_toml(&text, &env).unwrap_err().to_string();
    assert_eq!(first, report.errors[0].error.to_string());
}

#[test]
fn a_short_session_key_is_reported_once() {
    let text = EXAMPLE.replace("env:SEALGATE_KEY", "env:SHORT_KEY");
    let report = check(&text);
    let problem = error(&report, "session.keys");
    assert!(problem.error.to_string().contains("3 bytes"), "{problem}");
    assert_eq!(problem.place, line(&text, "keys ="));
    assert_eq!(report.summary(), "sealgate.toml: 1 error");
}

#[test]
fn each_bad_key_in_a_list_is_placed_on_its_own_line() {
    let text = EXAMPLE.replace(
        r#"keys = ["env:SEALGATE_KEY"]"#,
        "keys = [\n  \"env:SEALGATE_KEY\",\n  \"env:SHORT_KEY\",\n  \"inline\",\n]",
    );
    let report = check(&text);
    // The inline secret is refused; the ring is not decoded with a key missing.
    let problem = error(&report, "session.keys[2]");
    assert_eq!(problem.place, line(&text, "  \"inline\""));
    assert_eq!(report.errors.len(), 1, "{:#?}", report.errors);

    let text = text.replace("  \"inline\",\n", "");
    let report = check(&text);
    let problem = error(&report, "session key 2");
    assert_eq!(problem.place, line(&text, "  \"env:SHORT_KEY\""));
}

#[test]
fn an_unset_variable_is_noted_once() {
    let text = EXAMPLE
        .replace(
            r#"keys = ["env:SEALGATE_KEY"]"#,
            r#"keys = ["env:SEALGATE_KEY", "env:UNSET_KEY"]"#,
        )
        .replace("env:SEALGATE_CLIENT_SECRET", "env:UNSET_KEY");
    let report = check(&text);
    assert!(report.is_ok(), "{:#?}", report.errors);
    let notes: Vec<_> = report
        .warnings
        .iter()
        .filter(|w| w.contains("UNSET_KEY is not set here"))
        .collect();
    assert_eq!(notes.len(), 1, "{:#?}", report.warnings);
}

#[test]
fn overridden_values_name_their_variable() {
    let overrides = vec![("SEALGATE__SERVER__LISTEN".to_owned(), "nowhere".to_owned())];
    let report = check_text(Path::new("sealgate.toml"), EXAMPLE, &env, &overrides);
    let problem = error(&report, "server.listen");
    assert_eq!(
        problem.place,
        Place::Variable("SEALGATE__SERVER__LISTEN".into())
    );
    assert_eq!(
        problem.to_string(),
        "config: server.listen: \"nowhere\" is not an address like 127.0.0.1:8080 (from SEALGATE__SERVER__LISTEN)"
    );

    let overrides = vec![(
        "SEALGATE__SERVER__LISTEN".to_owned(),
        "0.0.0.0:1".to_owned(),
    )];
    let report = check_text(Path::new("sealgate.toml"), EXAMPLE, &env, &overrides);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w == "SEALGATE__SERVER__LISTEN overrides the file"),
        "{:#?}",
        report.warnings
    );
}

#[test]
fn warnings_name_their_line() {
    let text = EXAMPLE.replace(
        r#"token = "user""#,
        "token = \"user\"\nforward_cookies = \"all\"",
    );
    let report = check(&text);
    assert!(report.is_ok(), "{:#?}", report.errors);
    let Place::Line(n) = line(&text, "forward_cookies") else {
        unreachable!()
    };
    let expected = format!("routes[0].forward_cookies (line {n}): \"all\"");
    assert!(
        report.warnings.iter().any(|w| w.starts_with(&expected)),
        "{:#?}",
        report.warnings
    );
    assert!(
        report.summary().starts_with("sealgate.toml: ok ("),
        "{}",
        report.summary()
    );
}

#[test]
fn check_config_checks_the_journal_directory() {
    let dir = tempfile::tempdir().unwrap();
    let with_journal = |path: &Path| {
        format!(
            "{EXAMPLE}\n[revocation]\njournal = {:?}\n",
            path.display().to_string()
        )
    };

    let text = with_journal(&dir.path().join("missing").join("revocations.journal"));
    let report = check(&text);
    let problem = error(&report, "revocation.journal");
    assert!(
        problem.error.to_string().contains("does not exist"),
        "{problem}"
    );
    assert_eq!(problem.place, line(&text, "journal ="));
    // `serve` loads the same file and fails later, when it opens the journal (as before).
    Settings::from_toml(&text, &env).unwrap();

    // The journal itself may not exist yet; checking does not create it.
    let journal = dir.path().join("revocations.journal");
    let report = check(&with_journal(&journal));
    assert!(report.is_ok(), "{:#?}", report.errors);
    assert!(!journal.exists());

    std::fs::create_dir(&journal).unwrap();
    let report = check(&with_journal(&journal));
    assert!(
        error(&report, "revocation.journal")
            .error
            .to_string()
            .contains("is not a file")
    );

    let file = dir.path().join("plain-file");
    std::fs::write(&file, "").unwrap();
    let report = check(&with_journal(&file.join("revocations.journal")));
    assert!(
        error(&report, "revocation.journal")
            .error
            .to_string()
            .contains("is not a directory")
    );
}

#[cfg(unix)]
#[test]
fn check_config_refuses_a_journal_directory_it_cannot_write() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(locked.join("probe"), "").is_ok() {
        // Privileged (root): no directory is unwritable to this process.
        eprintln!("skipped: this process can write to a read-only directory");
        return;
    }
    let text = format!(
        "{EXAMPLE}\n[revocation]\njournal = {:?}\n",
        locked.join("revocations.journal").display().to_string()
    );
    let report = check(&text);
    assert!(
        error(&report, "revocation.journal")
            .error
            .to_string()
            .contains("not writable")
    );
}

#[test]
fn check_config_checks_the_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let text = EXAMPLE.replace(
        "[oidc]",
        &format!(
            "tls_cert = {:?}\ntls_key = {:?}\n[oidc]",
            cert.display().to_string(),
            key.display().to_string()
        ),
    );
    let report = check(&text);
    for (name, start) in [
        ("server.tls_cert", "tls_cert"),
        ("server.tls_key", "tls_key"),
    ] {
        let problem = error(&report, name);
        assert!(
            problem.error.to_string().contains("cannot read"),
            "{problem}"
        );
        assert_eq!(problem.place, line(&text, start));
    }
    assert_eq!(report.errors.len(), 2, "{:#?}", report.errors);
    // `serve` reads them at start-up and fails there, as before.
    Settings::from_toml(&text, &env).unwrap();

    std::fs::write(&cert, "not checked here").unwrap();
    std::fs::write(&key, "not checked here").unwrap();
    let report = check(&text);
    assert!(report.is_ok(), "{:#?}", report.errors);

    let text = text.replace(
        &format!("{:?}", key.display().to_string()),
        &format!("{:?}", dir.path().display().to_string()),
    );
    let report = check(&text);
    assert!(
        error(&report, "server.tls_key")
            .error
            .to_string()
            .contains("is not a file")
    );
}

#[test]
fn check_config_checks_the_static_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<!doctype html>").unwrap();
    let text = format!(
        "{EXAMPLE}\n[static]\ndir = {:?}\n",
        dir.path().display().to_string()
    );
    let report = check(&text);
    assert!(report.is_ok(), "{:#?}", report.errors);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let index = dir.path().join("index.html");
        std::fs::set_permissions(&index, std::fs::Permissions::from_mode(0o000)).unwrap();
        if std::fs::File::open(&index).is_ok() {
            // Privileged (root): every file is readable to this process.
            eprintln!("skipped: this process can read a mode-000 file");
            return;
        }
        let report = check(&text);
        let problem = error(&report, "static.dir");
        assert!(
            problem.error.to_string().contains("cannot read"),
            "{problem}"
        );
        assert_eq!(problem.place, line(&text, "dir ="));
        // `serve` starts with it (each request fails instead), as before.
        Settings::from_toml(&text, &env).unwrap();
    }
}

#[test]
fn check_config_reads_file_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("client-secret");
    let text = EXAMPLE.replace(
        "env:SEALGATE_CLIENT_SECRET",
        &format!("file:{}", missing.display()),
    );
    let report = check(&text);
    let problem = error(&report, "oidc.client_secret");
    assert!(
        problem.error.to_string().contains("cannot read"),
        "{problem}"
    );
    assert_eq!(problem.place, line(&text, "client_secret ="));

    std::fs::write(&missing, "s3cret\n").unwrap();
    let report = check(&text);
    assert!(report.is_ok(), "{:#?}", report.errors);
    assert!(!format!("{report:?}").contains("s3cret"));
}

#[test]
fn a_secret_of_the_wrong_type_is_not_echoed() {
    let text = EXAMPLE.replace(
        r#"keys = ["env:SEALGATE_KEY"]"#,
        r#"keys = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=""#,
    );
    let report = check(&text);
    let problem = error(&report, "session.keys");
    assert_eq!(problem.place, line(&text, "keys ="));
    let shown = problem.to_string();
    assert!(
        shown.contains("expected a sequence") && !shown.contains("QUJD"),
        "{shown}"
    );
}
