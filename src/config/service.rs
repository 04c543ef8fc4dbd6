//! A service as written in YAML (`services:` of the main file, or inline in a worker file),
//! and its validation into the [`ServiceDef`] the worker runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The raw form: exactly one of `exec`, `http` or `builtin`, plus the options of that kind.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<String>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub duration: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ServiceSpec {
    /// Checks the spec and builds its runnable form. `base` is the folder of the file that
    /// defined it: a relative program path (`./bin/x`) resolves against it.
    pub fn validate(&self, base: &Path) -> Result<ServiceDef, String> {
        match (&self.exec, &self.http, &self.builtin) {
            (Some(argv), None, None) => self.exec_def(argv, base),
            (None, Some(url), None) => self.http_def(url),
            (None, None, Some(name)) => self.builtin_def(name),
            _ => Err("a service needs exactly one of `exec`, `http` or `builtin`".into()),
        }
    }

    fn exec_def(&self, argv: &[String], base: &Path) -> Result<ServiceDef, String> {
        self.only_options("exec", &["timeout", "env"])?;
        let (program, args) = argv
            .split_first()
            .ok_or("`exec` needs at least the program to run")?;
        let program = Path::new(program);
        let program = if program.is_relative() && program.components().count() > 1 {
            base.join(program)
        } else {
            program.to_path_buf()
        };
        Ok(ServiceDef::Exec(ExecSpec {
            program,
            args: args.to_vec(),
            timeout: self.timeout.unwrap_or(DEFAULT_EXEC_TIMEOUT),
            env: self.env.clone(),
        }))
    }

    fn http_def(&self, url: &str) -> Result<ServiceDef, String> {
        self.only_options("http", &["timeout", "method", "headers"])?;
        let url = reqwest::Url::parse(url).map_err(|e| format!("bad `http` URL {url:?}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "`http` URL must be http or https, not {}",
                url.scheme()
            ));
        }
        let method = self.method.as_deref().unwrap_or("POST");
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes())
            .map_err(|_| format!("bad HTTP method {method:?}"))?;
        Ok(ServiceDef::Http(HttpSpec {
            url,
            method,
            timeout: self.timeout.unwrap_or(DEFAULT_HTTP_TIMEOUT),
            headers: self.headers.clone(),
        }))
    }

    fn builtin_def(&self, name: &str) -> Result<ServiceDef, String> {
        let builtin = match name {
            "constant" => {
                self.only_options("builtin constant", &["value"])?;
                Builtin::Constant(
                    self.value
                        .clone()
                        .ok_or("builtin `constant` needs `value`")?,
                )
            }
            "echo" => {
                self.only_options("builtin echo", &[])?;
                Builtin::Echo
            }
            "sleep" => {
                self.only_options("builtin sleep", &["duration"])?;
                Builtin::Sleep(self.duration.ok_or("builtin `sleep` needs `duration`")?)
            }
            "fail" => {
                self.only_options("builtin fail", &["message"])?;
                Builtin::Fail(self.message.clone().unwrap_or_else(|| "failed".into()))
            }
            other => {
                return Err(format!(
                    "unknown builtin {other:?} (known: constant, echo, sleep, fail)"
                ))
            }
        };
        Ok(ServiceDef::Builtin(builtin))
    }

    /// Rejects options that belong to another kind, so `value:` on an exec service is a
    /// reported mistake rather than silently ignored.
    fn only_options(&self, kind: &str, allowed: &[&str]) -> Result<(), String> {
        let present = [
            ("timeout", self.timeout.is_some()),
            ("env", !self.env.is_empty()),
            ("method", self.method.is_some()),
            ("headers", !self.headers.is_empty()),
            ("value", self.value.is_some()),
            ("duration", self.duration.is_some()),
            ("message", self.message.is_some()),
        ];
        let stray: Vec<&str> = present
            .iter()
            .filter(|(name, set)| *set && !allowed.contains(name))
            .map(|(name, _)| *name)
            .collect();
        if stray.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{kind} service does not take: {}",
                stray.join(", ")
            ))
        }
    }
}

/// A validated service definition, what [`ServiceSpec`] (the YAML form) becomes. Serde
/// round-trips it: the supervisor hands a replica its worker's services as validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServiceDef {
    Exec(ExecSpec),
    Http(HttpSpec),
    Builtin(Builtin),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub timeout: Duration,
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpSpec {
    pub url: reqwest::Url,
    #[serde(with = "method_name")]
    pub method: reqwest::Method,
    pub timeout: Duration,
    pub headers: BTreeMap<String, String>,
}

/// Compiled-in services for examples, tests and benchmarks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Builtin {
    Constant(Value),
    Echo,
    Sleep(Duration),
    Fail(String),
}

/// An HTTP method as its name (`POST`), for serde.
mod method_name {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(method: &reqwest::Method, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(method.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<reqwest::Method, D::Error> {
        let name = String::deserialize(d)?;
        reqwest::Method::from_bytes(name.as_bytes()).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> ServiceSpec {
        serde_yaml::from_str(yaml).expect("test yaml parses")
    }

    #[test]
    fn builtin_constant_needs_a_value() {
        let def = spec("{builtin: constant, value: test1}").validate(Path::new("."));
        assert!(matches!(def, Ok(ServiceDef::Builtin(Builtin::Constant(v))) if v == "test1"));
        let err = spec("{builtin: constant}")
            .validate(Path::new("."))
            .unwrap_err();
        assert!(err.contains("needs `value`"), "{err}");
    }

    #[test]
    fn exactly_one_kind() {
        let err = spec("{builtin: echo, http: 'http://x'}")
            .validate(Path::new("."))
            .unwrap_err();
        assert!(err.contains("exactly one"), "{err}");
        assert!(spec("{}").validate(Path::new(".")).is_err());
    }

    #[test]
    fn options_of_another_kind_are_rejected() {
        let err = spec("{exec: [cat], value: 1}")
            .validate(Path::new("."))
            .unwrap_err();
        assert!(err.contains("does not take: value"), "{err}");
    }

    #[test]
    fn exec_paths_with_a_folder_resolve_against_the_file() {
        let def = spec("{exec: [./bin/svc, -v], timeout: 5s}").validate(Path::new("/etc/dpsd"));
        let Ok(ServiceDef::Exec(exec)) = def else {
            panic!("exec expected: {def:?}")
        };
        assert_eq!(exec.program, Path::new("/etc/dpsd/./bin/svc"));
        assert_eq!(exec.args, vec!["-v".to_string()]);
        assert_eq!(exec.timeout, Duration::from_secs(5));
        let def = spec("{exec: [cat]}").validate(Path::new("/etc/dpsd"));
        let Ok(ServiceDef::Exec(exec)) = def else {
            panic!("exec expected")
        };
        assert_eq!(
            exec.program,
            Path::new("cat"),
            "bare names are looked up on PATH"
        );
    }

    #[test]
    fn human_durations_and_bad_ones() {
        assert_eq!(
            spec("{builtin: sleep, duration: 90 minutes}").duration,
            Some(Duration::from_secs(5400))
        );
        assert!(serde_yaml::from_str::<ServiceSpec>("{builtin: sleep, duration: soon}").is_err());
    }

    #[test]
    fn http_urls_and_methods_are_checked() {
        assert!(spec("{http: 'ftp://x/'}").validate(Path::new(".")).is_err());
        assert!(spec("{http: 'not a url'}")
            .validate(Path::new("."))
            .is_err());
        let Ok(ServiceDef::Http(h)) =
            spec("{http: 'http://127.0.0.1:1/x', method: put}").validate(Path::new("."))
        else {
            panic!("http expected")
        };
        assert_eq!(h.method, reqwest::Method::PUT);
    }
}
