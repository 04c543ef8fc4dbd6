//! HTTP Basic authentication for every route but the probes (SPEC 6.1): plain passwords
//! compared in constant time, or argon2 hashes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpResponse};
use actix_web_httpauth::extractors::basic::BasicAuth;
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use subtle::ConstantTimeEq;

use crate::config::Credential;

/// The users allowed in; empty means the API is open (`api.auth: null`).
#[derive(Debug, Default)]
pub struct Users {
    secrets: BTreeMap<String, Secret>,
    /// The password that last passed an argon2 check, per user: checking a hash costs tens
    /// of milliseconds by design, too much to pay on every request of a dashboard.
    verified: Mutex<HashMap<String, String>>,
}

#[derive(Debug, Clone)]
enum Secret {
    Plain(String),
    Argon2(String),
}

impl Users {
    /// From `api.auth` (validated already: one of password or password_hash per user).
    pub fn new(auth: Option<&BTreeMap<String, Credential>>) -> Users {
        let users = auth.into_iter().flatten().filter_map(|(user, credential)| {
            let secret = match (&credential.password, &credential.password_hash) {
                (_, Some(hash)) => Secret::Argon2(hash.clone()),
                (Some(password), None) => Secret::Plain(password.clone()),
                (None, None) => return None,
            };
            Some((user.clone(), secret))
        });
        Users {
            secrets: users.collect(),
            verified: Mutex::default(),
        }
    }

    pub fn is_open(&self) -> bool {
        self.secrets.is_empty()
    }

    pub fn verify(&self, user: &str, password: &str) -> bool {
        match self.secrets.get(user) {
            Some(Secret::Plain(expected)) => same(expected, password),
            Some(Secret::Argon2(hash)) => self.verify_hash(user, hash, password),
            None => false,
        }
    }

    fn verify_hash(&self, user: &str, hash: &str, password: &str) -> bool {
        let cached = self
            .verified()
            .get(user)
            .is_some_and(|known| same(known, password));
        if cached {
            return true;
        }
        let ok = PasswordHash::new(hash).is_ok_and(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        });
        if ok {
            self.verified()
                .insert(user.to_string(), password.to_string());
        }
        ok
    }

    fn verified(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.verified
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Constant-time equality (the length may still show).
fn same(expected: &str, given: &str) -> bool {
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

/// The middleware: lets the probes (`/health`, `/livez`, `/readyz`) and an open API through, else requires a known user.
pub async fn require_user(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let open = super::probes::OPEN_PATHS.contains(&request.path())
        || request
            .app_data::<web::Data<Users>>()
            .is_none_or(|users| users.is_open());
    if open || authenticated(&request).await {
        return next
            .call(request)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let response = HttpResponse::Unauthorized()
        .insert_header((header::WWW_AUTHENTICATE, r#"Basic realm="dpsd""#))
        .json(serde_json::json!({"error": "authentication required"}));
    Ok(request.into_response(response).map_into_right_body())
}

async fn authenticated(request: &ServiceRequest) -> bool {
    let Some(users) = request.app_data::<web::Data<Users>>() else {
        return false;
    };
    let Ok(credentials) = BasicAuth::extract(request.request()).await else {
        return false;
    };
    users.verify(
        credentials.user_id(),
        credentials.password().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> Users {
        let mut auth = BTreeMap::new();
        auth.insert(
            "admin".to_string(),
            Credential {
                password: Some("test".into()),
                password_hash: None,
            },
        );
        auth.insert(
            "ops".to_string(),
            Credential {
                password: None,
                password_hash: Some(hash("s3cret")),
            },
        );
        Users::new(Some(&auth))
    }

    fn hash(password: &str) -> String {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"a fixed salt").expect("salt");
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .expect("hash")
            .to_string()
    }

    #[test]
    fn plain_and_hashed_passwords() {
        let users = users();
        assert!(users.verify("admin", "test"));
        assert!(users.verify("ops", "s3cret"));
        assert!(!users.verify("admin", "tesT"));
        assert!(!users.verify("admin", ""));
        assert!(!users.verify("nobody", "test"));
        assert!(!users.verify("ops", "wrong"));
        assert!(!Users::new(None).verify("admin", "test"));
        assert!(Users::new(None).is_open());
    }
}
