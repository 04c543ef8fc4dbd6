//! What `make install` puts in place, and the systemd unit it installs (SPEC 10).

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_unit_passes_systemd_analyze_or_at_least_parses() {
    let unit = std::fs::read_to_string(root().join("systemd/dpsd.service")).expect("unit file");
    let keys: Vec<(&str, &str)> = unit
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .filter_map(|l| l.split_once('='))
        .collect();
    let value = |key: &str| keys.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    assert_eq!(value("Type"), Some("notify"));
    assert_eq!(value("ExecReload"), Some("/bin/kill -HUP $MAINPID"));
    assert_eq!(value("Restart"), Some("on-failure"));
    assert_eq!(value("KillMode"), Some("mixed"));
    assert_eq!(value("User"), Some("dpsd"));
    assert_eq!(value("NoNewPrivileges"), Some("yes"));
    assert!(value("ExecStart").is_some_and(|v| v.ends_with(" run")));

    let Ok(analyze) = which("systemd-analyze") else {
        eprintln!("systemd-analyze not installed: the parse checks above stand alone");
        return;
    };
    // verify wants the binary to exist: point ExecStart at the one under test.
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("dpsd.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/dpsd", env!("CARGO_BIN_EXE_dpsd")),
    )
    .expect("write");
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("run systemd-analyze");
    let complaints = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && complaints.trim().is_empty(),
        "{complaints}"
    );
}

fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.exists())
        .ok_or(())
}

#[test]
fn the_shipped_configuration_and_its_production_overlay_are_valid() {
    for env in [None, Some("production")] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dpsd"));
        command
            .arg("--config")
            .arg(root().join("etc/dpsd.yaml"))
            .arg("check")
            .env_remove("DPSD_ENV");
        if let Some(env) = env {
            command.args(["--env", env]);
        }
        let out = command.output().expect("run dpsd check");
        assert!(
            out.status.success(),
            "{env:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn make_install_stages_binary_unit_user_and_config() {
    let stage = tempfile::tempdir().expect("tempdir");
    let out = Command::new("make")
        .current_dir(root())
        .arg("install")
        .arg(format!("DESTDIR={}", stage.path().display()))
        .arg("PREFIX=/usr")
        .arg(format!("BINARY={}", env!("CARGO_BIN_EXE_dpsd")))
        .output()
        .expect("run make install");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let staged = |p: &str| stage.path().join(p.trim_start_matches('/'));
    for file in [
        "/usr/bin/dpsd",
        "/usr/lib/sysusers.d/dpsd.conf",
        "/etc/dpsd/workers.d/test_worker1.yaml",
        "/etc/dpsd/workers.d/test_worker2.yaml",
        "/usr/share/doc/dpsd/operations.md",
    ] {
        assert!(staged(file).exists(), "{file} missing");
    }
    let unit = std::fs::read_to_string(staged("/etc/systemd/system/dpsd.service")).expect("unit");
    assert!(
        unit.contains("ExecStart=/usr/bin/dpsd --config /etc/dpsd/dpsd.yaml run"),
        "{unit}"
    );

    // The installed configuration is valid where it stands.
    let out = Command::new(env!("CARGO_BIN_EXE_dpsd"))
        .arg("--config")
        .arg(staged("/etc/dpsd/dpsd.yaml"))
        .arg("check")
        .output()
        .expect("run dpsd check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = std::fs::read_to_string(staged("/etc/dpsd/dpsd.yaml")).expect("config");
    assert!(config.contains("state_dir: /var/lib/dpsd"), "{config}");

    // A second install keeps an edited configuration.
    std::fs::write(staged("/etc/dpsd/workers.d/test_worker1.yaml"), "edited").expect("edit");
    let again = Command::new("make")
        .current_dir(root())
        .args([
            "install",
            &format!("DESTDIR={}", stage.path().display()),
            "PREFIX=/usr",
        ])
        .arg(format!("BINARY={}", env!("CARGO_BIN_EXE_dpsd")))
        .output()
        .expect("run make install");
    assert!(again.status.success());
    let kept =
        std::fs::read_to_string(staged("/etc/dpsd/workers.d/test_worker1.yaml")).expect("read");
    assert_eq!(kept, "edited");
}
