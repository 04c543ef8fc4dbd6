//! Where RabbitMQ is: the nodes of one cluster (SPEC 3.3), tried in turn. A process connects
//! to the first node that answers; after it loses that connection it tries the next node
//! first, so it moves off a node that died instead of waiting for it. Each attempt is
//! bounded in time, so a node that swallows packets does not hold up the others.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use amqprs::callbacks::DefaultConnectionCallback;
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::tls::TlsAdaptor;
use percent_encoding::percent_decode_str;

use super::tls;
use super::BrokerError;
use crate::config::{check_amqp_url, AmqpSettings, TlsSettings};
use crate::redact::redact_urls;

/// Heartbeats let a dead TCP connection be noticed in seconds, not minutes.
const HEARTBEAT_SECS: u16 = 10;
/// How long one node may take to answer before the next is tried.
const ATTEMPT: Duration = Duration::from_secs(5);

/// The nodes of `amqp.url`, with TLS for the `amqps://` ones.
#[derive(Debug)]
pub struct Endpoint {
    nodes: Vec<String>,
    tls: TlsSettings,
    /// The node to try first next time.
    next: AtomicUsize,
}

impl Endpoint {
    pub fn new(settings: &AmqpSettings) -> Endpoint {
        Endpoint {
            nodes: settings.url.0.clone(),
            tls: settings.tls.clone(),
            next: AtomicUsize::new(0),
        }
    }

    /// Opens a connection named for what this process is (it shows in the management UI),
    /// to the first node that answers; `Err` names every node tried and why it failed.
    pub async fn connect(&self, name: &str) -> Result<Connection, BrokerError> {
        let count = self.nodes.len();
        let first = self.next.load(Ordering::Relaxed) % count.max(1);
        let mut failures = Vec::new();
        for i in (0..count).map(|k| (first + k) % count) {
            match self.connect_to(&self.nodes[i], name).await {
                Ok(connection) => {
                    // Lost later, the next node is tried first.
                    self.next.store(i + 1, Ordering::Relaxed);
                    return Ok(connection);
                }
                Err(reason) => failures.push((redact_urls(&self.nodes[i]), reason)),
            }
        }
        Err(match failures.as_slice() {
            [(url, reason)] => BrokerError::Connect {
                url: url.clone(),
                reason: reason.clone(),
            },
            several => BrokerError::Connect {
                url: "any of its nodes".into(),
                reason: several
                    .iter()
                    .map(|(url, reason)| format!("{url}: {reason}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            },
        })
    }

    /// The nodes as they may be shown: without their passwords.
    pub fn shown(&self) -> String {
        redact_urls(&self.nodes.join(", "))
    }

    async fn connect_to(&self, url: &str, name: &str) -> Result<Connection, String> {
        let mut args = self.arguments(url)?;
        args.connection_name(name).heartbeat(HEARTBEAT_SECS);
        let opened = tokio::time::timeout(ATTEMPT, Connection::open(&args))
            .await
            .map_err(|_| format!("no answer within {}s", ATTEMPT.as_secs()))?;
        let connection = opened.map_err(|e| redact_urls(&e.to_string()))?;
        connection
            .register_callback(DefaultConnectionCallback)
            .await
            .map_err(|e| e.to_string())?;
        Ok(connection)
    }

    /// The node's host, port, credentials and vhost, and TLS when it is `amqps://`.
    fn arguments(&self, url: &str) -> Result<OpenConnectionArguments, String> {
        let mut args = connection_arguments(url)?;
        if url.starts_with("amqps://") {
            let host = args.get_host().to_string();
            args.tls_adaptor(TlsAdaptor::new(tls::connector(&self.tls)?, host));
        }
        Ok(args)
    }
}

/// Reads an `amqp://user:password@host:port/vhost` URL the way RabbitMQ documents it: the
/// vhost is percent-decoded (`%2f` is `/`), an empty path means the default vhost `/`, and
/// the port defaults to 5672 (5671 for `amqps://`).
pub fn connection_arguments(url: &str) -> Result<OpenConnectionArguments, String> {
    check_amqp_url(url)?;
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    let host = parsed.host_str().ok_or("no host")?;
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().to_string();
    let user = match parsed.username() {
        "" => "guest".to_string(),
        user => decode(user),
    };
    let password = parsed
        .password()
        .map(decode)
        .unwrap_or_else(|| "guest".into());
    let vhost = match parsed.path().trim_start_matches('/') {
        "" => "/".to_string(),
        path => decode(path),
    };
    let default_port = if parsed.scheme() == "amqps" {
        5671
    } else {
        5672
    };
    // An IPv6 literal comes bracketed; the socket address wants it bare.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = parsed.port().unwrap_or(default_port);
    let mut args = OpenConnectionArguments::new(host, port, &user, &password);
    args.virtual_host(&vhost);
    Ok(args)
}
