//! The main settings file through `Config::load`, exactly as `dpsd` reads it: each input is
//! written to `$TMPDIR/dpsd-fuzz-main-PID/dpsd.yaml` (tools/fuzz.sh points TMPDIR at a tmpfs)
//! and loaded. An input with a NUL byte is split there: the part after it becomes the
//! `--env fuzz` overlay `dpsd.fuzz.yaml` (NUL is not valid YAML anyway).
//! Any text must give Ok or Err(problems), never a panic; an accepted configuration must
//! satisfy what the rest of dpsd relies on.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use dpsd::config::{check_amqp_url, Config, Source};
use libfuzzer_sys::fuzz_target;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // DPSD_SECTION__KEY variables would take part in the layering: keep the input alone.
        let stray: Vec<String> = std::env::vars()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with("DPSD_"))
            .collect();
        assert!(stray.is_empty(), "unset these before fuzzing: {stray:?}");
        let dir = std::env::temp_dir().join(format!("dpsd-fuzz-main-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (main, overlay) = match text.split_once('\0') {
        Some((main, overlay)) => (main, Some(overlay)),
        None => (text, None),
    };
    let dir = dir();
    let path = dir.join("dpsd.yaml");
    std::fs::write(&path, main).expect("write main file");
    if let Some(overlay) = overlay {
        std::fs::write(dir.join("dpsd.fuzz.yaml"), overlay).expect("write overlay");
    }
    let source = Source {
        config: Some(path),
        env: overlay.map(|_| "fuzz".to_string()),
    };
    let Ok(config) = Config::load(&source) else {
        return;
    };
    let settings = &config.settings;
    assert!(settings.amqp.prefetch >= 1);
    assert!(!settings.amqp.url.0.is_empty());
    for url in settings.amqp.url.iter() {
        assert_eq!(check_amqp_url(url), Ok(()));
    }
    assert!((1..=900).contains(&settings.amqp.delivery_limit));
    assert_eq!(config.services.len(), settings.services.len());
    for p in [&settings.state_dir, &settings.jobs_dir, &settings.workers_dir] {
        assert!(p.is_absolute(), "{p:?} not resolved against the file's folder");
    }
    for (_, credential) in settings.api.auth.iter().flatten() {
        assert_eq!(credential.problem(), None);
    }
});
