//! `[telemetry]`: off unless `otlp_endpoint` is set; each bad value named with its key and line.

use std::path::Path;

use super::super::Place;
use super::super::check::check_text;
use super::{EXAMPLE, env, parse};

fn with(table: &str) -> String {
    format!("{EXAMPLE}\n[telemetry]\n{table}\n")
}

#[test]
fn traces_are_off_by_default() {
    let t = parse(EXAMPLE).unwrap().telemetry;
    assert_eq!(t.otlp_endpoint, None);
    assert_eq!(t.service_name, "sealgate");
    assert!((t.sample_ratio - 1.0).abs() < f64::EPSILON);
}

#[test]
fn endpoint_service_name_and_ratio_are_read() {
    let s = parse(&with(
        "otlp_endpoint = \"http://otel-collector:4318\"\nservice_name = \"bff-eu\"\nsample_ratio = 0.25",
    ))
    .unwrap();
    assert_eq!(
        s.telemetry.otlp_endpoint.unwrap().as_str(),
        "http://otel-collector:4318/"
    );
    assert_eq!(s.telemetry.service_name, "bff-eu");
    assert!((s.telemetry.sample_ratio - 0.25).abs() < f64::EPSILON);
    let s = parse(&with("otlp_endpoint = \"https://collector.example/otlp\"")).unwrap();
    assert_eq!(
        s.telemetry.otlp_endpoint.unwrap().as_str(),
        "https://collector.example/otlp"
    );
}

#[test]
fn bad_telemetry_values_are_named_with_their_line() {
    for (line, key, says) in [
        (
            "otlp_endpoint = \"not a url\"",
            "telemetry.otlp_endpoint",
            "not a URL",
        ),
        (
            "otlp_endpoint = \"ftp://collector:4318\"",
            "telemetry.otlp_endpoint",
            "scheme",
        ),
        (
            "otlp_endpoint = \"http://user:pw@collector:4318\"",
            "telemetry.otlp_endpoint",
            "user info",
        ),
        (
            "otlp_endpoint = \"http://collector:4318/?x=1\"",
            "telemetry.otlp_endpoint",
            "query",
        ),
        ("service_name = \"\"", "telemetry.service_name", "printable"),
        (
            "service_name = \"two words\"",
            "telemetry.service_name",
            "printable",
        ),
        ("sample_ratio = 1.5", "telemetry.sample_ratio", "between"),
        ("sample_ratio = -0.1", "telemetry.sample_ratio", "between"),
        ("sample_rate = 0.5", "sample_rate", "unknown"),
    ] {
        let text = with(line);
        let report = check_text(Path::new("sealgate.toml"), &text, &env, &[]);
        assert_eq!(report.errors.len(), 1, "{line}: {:#?}", report.errors);
        let problem = &report.errors[0];
        let shown = problem.error.to_string();
        assert!(
            shown.contains(key) && shown.contains(says),
            "{line}: {shown}"
        );
        let at = text.lines().position(|l| l == line).unwrap() + 1;
        assert_eq!(problem.place, Place::Line(at), "{line}: {problem}");
        assert!(!shown.contains("pw@"), "{shown}");
    }
}
