//! HTTP Basic authentication for every route but `/health` (SPEC 6.1): plain passwords
//! compared in constant time, or argon2 hashes.

use std::collections::BTreeMap;

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
#[derive(Debug, Clone, Default)]
pub struct Users(BTreeMap<String, Secret>);

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
        Users(users.collect())
    }

    pub fn is_open(&self) -> bool {
        self.0.is_empty()
    }

    pub fn verify(&self, user: &str, password: &str) -> bool {
        match self.0.get(user) {
            Some(Secret::Plain(expected)) => expected.as_bytes().ct_eq(password.as_bytes()).into(),
            Some(Secret::Argon2(hash)) => PasswordHash::new(hash).is_ok_and(|hash| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            }),
            None => false,
        }
    }
}

/// The middleware: lets `/health` and an open API through, else requires a known user.
pub async fn require_user(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let open = request.path() == "/health"
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
