//! The dashboard (SPEC 9): three static files compiled into the binary (no CDN, nothing to
//! build at run time), behind the API's authentication; the page itself talks to the API.

use actix_web::http::header;
use actix_web::{get, web, HttpResponse};

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/style.css");

#[get("/dashboard/")]
async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(INDEX)
}

#[get("/dashboard/app.js")]
async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(SCRIPT)
}

#[get("/dashboard/style.css")]
async fn style() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .body(STYLE)
}

/// `/dashboard`, and the original's `/agendash/`, lead to the dashboard.
async fn to_dashboard() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, "/dashboard/"))
        .finish()
}

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(index)
        .service(script)
        .service(style)
        .route("/dashboard", web::get().to(to_dashboard))
        .route("/agendash", web::get().to(to_dashboard))
        .route("/agendash/", web::get().to(to_dashboard));
}
