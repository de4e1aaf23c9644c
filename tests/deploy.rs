//! The container and Kubernetes deployment files: the manifests validate against the
//! Kubernetes schemas (kubernetes-validate from PyPI, strict, installed by scripts/test.sh: no
//! cluster runs here), the configurations they ship pass `portcullis check`, and the Dockerfile
//! copies files that exist and runs as a non-root user.

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn validator() -> String {
    let venv = format!("{ROOT}/target/test-venv/bin/kubernetes-validate");
    if Path::new(&venv).exists() {
        venv
    } else {
        "kubernetes-validate".into()
    }
}

fn manifests() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(format!("{ROOT}/deploy/kubernetes"))
        .expect("deploy/kubernetes")
        .filter_map(|e| e.ok().map(|e| e.path().display().to_string()))
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    files.sort();
    files
}

fn validate(files: &[String]) -> std::process::Output {
    Command::new(validator())
        .arg("--strict")
        .args(files)
        .output()
        .expect("run kubernetes-validate (installed by scripts/test.sh)")
}

#[test]
fn the_kubernetes_manifests_validate_against_the_schemas() {
    let files = manifests();
    let kinds: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("manifest"))
        .filter_map(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("kind: ").map(str::to_string))
        })
        .collect();
    for kind in [
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
    let out = validate(&files);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The validator does refuse a broken manifest (a misspelled field), so the pass means
    // something.
    let dir = tempfile::tempdir().expect("dir");
    let broken = dir.path().join("broken.yaml");
    let deployment =
        std::fs::read_to_string(format!("{ROOT}/deploy/kubernetes/deployment.yaml")).expect("read");
    std::fs::write(&broken, deployment.replace("readinessProbe:", "readynessProbe:")).expect("write");
    assert!(!validate(&[broken.display().to_string()]).status.success());
}

#[test]
fn the_shipped_configurations_pass_check() {
    // The image's default configuration.
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "-c", &format!("{ROOT}/conf/portcullis.container.yaml")])
        .output()
        .expect("check");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The ConfigMap's, with its cluster DNS name (which does not resolve here) as an address.
    let text =
        std::fs::read_to_string(format!("{ROOT}/deploy/kubernetes/configmap.yaml")).expect("configmap");
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
    let config = doc["data"]["portcullis.yaml"]
        .as_str()
        .expect("data.portcullis.yaml");
    let out = check(&config.replace("app.default.svc.cluster.local", "127.0.0.1"));
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn the_dockerfile_copies_what_exists_and_runs_as_a_non_root_user() {
    let dockerfile = std::fs::read_to_string(format!("{ROOT}/Dockerfile")).expect("Dockerfile");
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from="))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for source in &parts[1..parts.len() - 1] {
            assert!(
                Path::new(ROOT).join(source).exists(),
                "{line}: {source} does not exist"
            );
        }
    }
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert_ne!(user.trim(), "0");
    assert_ne!(user.trim(), "root");
    assert!(dockerfile.contains("/etc/portcullis/portcullis.yaml"));
    assert!(
        dockerfile.lines().filter(|l| l.starts_with("FROM ")).count() >= 2,
        "multi-stage"
    );
}
