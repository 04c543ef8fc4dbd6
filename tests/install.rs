//! What `make install` puts in place, and the systemd unit it installs (SPEC 10).

use std::path::{Path, PathBuf};
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

/// `scripts/binary-path.sh PROFILE` with `CARGO_TARGET_DIR` set to `target_dir`, or unset
/// (with its twin CARGO_BUILD_TARGET_DIR) when None: the path it printed.
fn binary_path(profile: &str, target_dir: Option<&Path>) -> PathBuf {
    let mut command = Command::new(root().join("scripts/binary-path.sh"));
    command
        .arg(profile)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR");
    if let Some(dir) = target_dir {
        command.env("CARGO_TARGET_DIR", dir);
    }
    let out = command.output().expect("run scripts/binary-path.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim_end())
}

#[test]
fn the_binary_path_is_where_cargo_puts_it() {
    let elsewhere = tempfile::tempdir().expect("tempdir");
    assert_eq!(
        binary_path("release", Some(elsewhere.path())),
        elsewhere.path().join("release/dpsd")
    );
    assert_eq!(
        binary_path("debug", Some(elsewhere.path())),
        elsewhere.path().join("debug/dpsd")
    );
    assert_eq!(
        binary_path("release", None),
        root().join("target/release/dpsd")
    );

    // With the environment cargo gave this test: the very binary it built for it.
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let out = Command::new(root().join("scripts/binary-path.sh"))
        .arg(profile)
        .output()
        .expect("run scripts/binary-path.sh");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        env!("CARGO_BIN_EXE_dpsd")
    );
}

#[test]
fn make_runs_the_binary_where_cargo_puts_it() {
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let out = Command::new("make")
        .current_dir(root())
        .args(["--dry-run", "run", "test"])
        .env("CARGO_TARGET_DIR", elsewhere.path())
        .output()
        .expect("run make --dry-run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let commands = String::from_utf8_lossy(&out.stdout);
    let (release, debug) = (
        elsewhere.path().join("release/dpsd"),
        elsewhere.path().join("debug/dpsd"),
    );
    let run = format!("{} --config etc/dpsd.yaml run", release.display());
    let fuzz = format!("DPSD={} tools/api-fuzz.sh", debug.display());
    for expected in [run, fuzz] {
        // The command, maybe with arguments after it (the fuzz's --seed).
        let given = |line: &str| {
            line.strip_prefix(expected.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
        };
        assert!(
            commands.lines().any(given),
            "{expected:?} is not in:\n{commands}"
        );
    }
}
