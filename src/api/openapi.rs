//! `GET /api/openapi.json`: the OpenAPI 3.0 document of this API, compiled into the binary
//! and served behind the same authentication as the other `/api` routes. The document is
//! kept by hand next to the routes; tests/api.rs checks that every operation in it is
//! routed, and tools/api-fuzz.sh fuzzes a running daemon from it with schemathesis.

use actix_web::{get, web, HttpResponse};

/// The document, as served.
pub const DOCUMENT: &str = include_str!("openapi.json");

#[get("/api/openapi.json")]
async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT)
}

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(document);
}

#[cfg(test)]
mod tests {
    use super::DOCUMENT;

    #[test]
    fn the_document_is_openapi_3_json() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("valid JSON");
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
        assert!(doc["paths"]["/health"]["get"]["security"]
            .as_array()
            .is_some_and(Vec::is_empty));
    }
}
