//! The `amqp` section (SPEC 3.3): the nodes of one RabbitMQ cluster, TLS for `amqps://`
//! nodes, and which type each queue is declared with. Validated here, so a wrong URL, a
//! missing certificate or a key that is not PEM is a problem `dpsd check` reports with its
//! line, not a replica that never connects.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::worker::WorkerDef;

/// How many times RabbitMQ may hand a quorum queue's message out before dpsd parks it.
pub const DEFAULT_DELIVERY_LIMIT: u32 = 50;
/// The largest `amqp.delivery_limit`: well under the limit dpsd declares quorum queues with
/// (1000), which the broker would enforce by dropping the message.
pub const MAX_DELIVERY_LIMIT: u32 = 900;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpSettings {
    pub url: Nodes,
    /// Messages in hand per replica; workers may override it.
    pub prefetch: u16,
    /// The type of queues whose consumer does not say (workers may).
    pub queue_type: QueueType,
    /// Deliveries of one message from a quorum queue that ended without a settlement (the
    /// replica died, or its connection did, while it held the message) after which dpsd
    /// parks it instead of taking it once more. RabbitMQ's own limit is set far above it.
    pub delivery_limit: u32,
    pub tls: TlsSettings,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        AmqpSettings {
            url: Nodes(vec!["amqp://guest:guest@127.0.0.1:5672/%2f".into()]),
            prefetch: 10,
            queue_type: QueueType::Classic,
            delivery_limit: DEFAULT_DELIVERY_LIMIT,
            tls: TlsSettings::default(),
        }
    }
}

/// The URLs of the nodes of one cluster, in the order they are tried. Written as one URL,
/// a list, or (for `DPSD_AMQP__URL`) one string with the URLs separated by commas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nodes(pub Vec<String>);

impl Nodes {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Whether any node is reached over TLS.
    pub fn any_tls(&self) -> bool {
        self.iter().any(|url| url.starts_with("amqps://"))
    }
}

impl Serialize for Nodes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => serializer.serialize_str(one),
            many => many.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Nodes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Nodes, D::Error> {
        struct NodesVisitor;
        impl<'de> Visitor<'de> for NodesVisitor {
            type Value = Nodes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an amqp:// or amqps:// URL, or a list of them")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Nodes, E> {
                let urls = text.split(',').map(str::trim).filter(|u| !u.is_empty());
                Ok(Nodes(urls.map(str::to_string).collect()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Nodes, A::Error> {
                let mut urls = Vec::new();
                while let Some(url) = seq.next_element::<String>()? {
                    urls.push(url);
                }
                Ok(Nodes(urls))
            }
        }
        deserializer.deserialize_any(NodesVisitor)
    }
}

/// TLS for `amqps://` nodes: the broker's certificate is verified against `ca_file` (or the
/// system's roots), and its host name against the URL's; `cert_file` with `key_file` is a
/// client certificate for mutual TLS.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl TlsSettings {
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }

    /// Every file named exists and holds what its key says, as PEM; a certificate comes with
    /// its key. Each problem is (the key, what is wrong).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        let mut check = |key: &'static str, file: &Option<PathBuf>, kind: Pem| {
            if let Some(file) = file {
                if let Err(reason) = kind.read(file) {
                    problems.push((key, format!("amqp.tls.{key}: {reason}")));
                }
            }
        };
        check("ca_file", &self.ca_file, Pem::Certificates);
        check("cert_file", &self.cert_file, Pem::Certificates);
        check("key_file", &self.key_file, Pem::PrivateKey);
        if self.cert_file.is_some() != self.key_file.is_some() {
            let message =
                "amqp.tls: cert_file and key_file go together (a client certificate and its key)";
            problems.push(("tls", message.into()));
        }
        problems
    }
}

/// What a PEM file must hold.
#[derive(Debug, Clone, Copy)]
pub enum Pem {
    Certificates,
    PrivateKey,
}

impl Pem {
    /// Reads `file` as this kind of PEM, to check it; the broker module reads it to use it.
    pub fn read(self, file: &Path) -> Result<(), String> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let shown = file.display();
        let bytes = std::fs::read(file).map_err(|e| format!("cannot read {shown}: {e}"))?;
        match self {
            Pem::Certificates => {
                let certificates = CertificateDer::pem_slice_iter(&bytes)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("{shown} is not PEM: {e}"))?;
                if certificates.is_empty() {
                    return Err(format!("{shown} holds no PEM certificate"));
                }
            }
            Pem::PrivateKey => {
                PrivateKeyDer::from_pem_slice(&bytes)
                    .map_err(|e| format!("{shown} holds no PEM private key: {e}"))?;
            }
        }
        Ok(())
    }
}

/// How RabbitMQ keeps a queue: on one node (`classic`) or replicated (`quorum`).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    #[default]
    Classic,
    Quorum,
}

impl QueueType {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }
}

impl fmt::Display for QueueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The type every queue is declared with (SPEC 3.3): a queue's type is the `queue_type` of
/// the worker that consumes it, else `amqp.queue_type`. Every declarer (a worker declaring
/// its follow queue, `dpsd send`, a publish job, the API, replay) asks here, so a queue is
/// never declared with two types.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueTypes {
    consumed: BTreeMap<String, QueueType>,
    default: QueueType,
}

impl QueueTypes {
    pub fn new<'a>(default: QueueType, workers: impl IntoIterator<Item = &'a WorkerDef>) -> Self {
        let consumed = workers
            .into_iter()
            .map(|w| (w.queue.clone(), w.queue_type))
            .collect();
        QueueTypes { consumed, default }
    }

    pub fn of(&self, queue: &str) -> QueueType {
        self.consumed.get(queue).copied().unwrap_or(self.default)
    }
}

/// An `amqp://` or `amqps://` `user:password@host:port/vhost` URL as the broker module
/// reads it.
pub fn check_amqp_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    if !matches!(parsed.scheme(), "amqp" | "amqps") {
        return Err(format!(
            "scheme must be amqp or amqps, not {}",
            parsed.scheme()
        ));
    }
    parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("no host")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_one_url_a_list_or_urls_separated_by_commas() {
        let read = |yaml: &str| serde_yaml::from_str::<Nodes>(yaml).expect("nodes");
        assert_eq!(read("amqp://a").0, ["amqp://a"]);
        assert_eq!(
            read("[amqp://a, 'amqps://b:5671']").0,
            ["amqp://a", "amqps://b:5671"]
        );
        assert_eq!(read("'amqp://a, amqp://b,'").0, ["amqp://a", "amqp://b"]);
        assert!(read("[]").0.is_empty());
    }

    #[test]
    fn one_node_is_written_back_as_a_string_and_several_as_a_list() {
        let one = serde_json::to_value(Nodes(vec!["amqp://a".into()])).expect("json");
        assert_eq!(one, serde_json::json!("amqp://a"));
        let two = serde_json::to_value(Nodes(vec!["amqp://a".into(), "amqp://b".into()]));
        assert_eq!(
            two.expect("json"),
            serde_json::json!(["amqp://a", "amqp://b"])
        );
    }

    #[test]
    fn a_queue_takes_its_consumers_type_else_the_default() {
        let quorum = WorkerDef {
            queue_type: QueueType::Quorum,
            ..WorkerDef::example("w", "in")
        };
        let types = QueueTypes::new(QueueType::Classic, [&quorum]);
        assert_eq!(types.of("in"), QueueType::Quorum);
        assert_eq!(types.of("elsewhere"), QueueType::Classic);
        let types = QueueTypes::new(QueueType::Quorum, []);
        assert_eq!(types.of("in"), QueueType::Quorum);
    }

    #[test]
    fn urls_must_be_amqp_or_amqps_with_a_host() {
        assert!(check_amqp_url("amqp://u:p@h:5672/%2f").is_ok());
        assert!(check_amqp_url("amqps://h").is_ok());
        assert!(check_amqp_url("http://h")
            .unwrap_err()
            .contains("amqp or amqps"));
        assert!(check_amqp_url("nonsense").is_err());
    }

    #[test]
    fn tls_files_must_exist_and_be_pem_of_their_kind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not pem at all\n").expect("write");
        let tls = TlsSettings {
            ca_file: Some(dir.path().join("missing.pem")),
            cert_file: Some(garbage.clone()),
            key_file: None,
        };
        let problems = tls.problems();
        let keys: Vec<&str> = problems.iter().map(|(key, _)| *key).collect();
        assert_eq!(keys, ["ca_file", "cert_file", "tls"], "{problems:?}");
        assert!(problems[0].1.contains("cannot read"), "{problems:?}");
        assert!(problems[1].1.contains("no PEM certificate"), "{problems:?}");
        let key_only = TlsSettings {
            key_file: Some(garbage),
            ..TlsSettings::default()
        };
        let problems = key_only.problems();
        assert!(problems[0].1.contains("no PEM private key"), "{problems:?}");
    }
}
