//! The container and Kubernetes deployment files: the manifests validate against the
//! Kubernetes schemas (kubernetes-validate from PyPI, strict, installed by scripts/test.sh: no
//! cluster runs here), the configurations they ship pass `portcullis check`, and the Dockerfile
//! copies files that exist and runs as a non-root user.

use std::path::Path;
use std::process::Command;

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
    // Its admin token comes from the environment (a Secret in Kubernetes): without it, the
    // gateway refuses to start.
    let container = format!("{ROOT}/conf/portcullis.container.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "-c", &container])
        .env_remove("PORTCULLIS_ADMIN_TOKEN")
        .output()
        .expect("check");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PORTCULLIS_ADMIN_TOKEN"));
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "-c", &container])
        .env("PORTCULLIS_ADMIN_TOKEN", "a-container-admin-token-0123456789")
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
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("portcullis.yaml");
    std::fs::write(
        &file,
        config.replace("app.default.svc.cluster.local", "127.0.0.1"),
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("check")
        .arg("-c")
        .arg(&file)
        .env("PORTCULLIS_ADMIN_TOKEN", "a-cluster-admin-token-0123456789")
        .output()
        .expect("check");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
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
    // Every file the binary embeds (include_str!/include_bytes!) is inside what the build stage
    // copies, or the image does not build.
    let copied: Vec<std::path::PathBuf> = dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from="))
        .flat_map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            parts[1..parts.len() - 1]
                .iter()
                .map(|s| Path::new(ROOT).join(s))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut embedded = 0;
    for file in rust_sources(&Path::new(ROOT).join("src")) {
        let text = std::fs::read_to_string(&file).expect("source");
        for (i, piece) in text.split("include_").enumerate().skip(1) {
            let Some(rest) = piece
                .strip_prefix("str!(\"")
                .or_else(|| piece.strip_prefix("bytes!(\""))
            else {
                continue;
            };
            let Some(relative) = rest.split('"').next() else {
                continue;
            };
            let target = file.parent().expect("dir").join(relative);
            let target = target
                .canonicalize()
                .unwrap_or_else(|e| panic!("{}: {relative}: {e}", file.display()));
            assert!(
                copied
                    .iter()
                    .any(|c| c.canonicalize().is_ok_and(|c| target.starts_with(c))),
                "{} embeds {} (piece {i}), which the Dockerfile's build stage does not copy",
                file.display(),
                target.display()
            );
            embedded += 1;
        }
    }
    assert!(embedded >= 6, "found {embedded} embedded files");
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

fn rust_sources(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(rust_sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found
}
