//! The dashboard (SPEC 9): static files compiled into the binary (no CDN, nothing to build at
//! run time), behind the API's authentication; the page itself talks to the API. Its charts
//! are uPlot, vendored unchanged in `dashboard/vendor/` with its MIT licence
//! (`uPlot-LICENSE`, served too, so the licence travels with the code).

use actix_web::http::header;
use actix_web::{web, HttpResponse};

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Every file of the dashboard: its path, content type and content.
const FILES: &[(&str, &str, &str)] = &[
    ("/dashboard/", HTML, include_str!("dashboard/index.html")),
    ("/dashboard/lib.js", JS, include_str!("dashboard/lib.js")),
    (
        "/dashboard/activity.js",
        JS,
        include_str!("dashboard/activity.js"),
    ),
    (
        "/dashboard/operate.js",
        JS,
        include_str!("dashboard/operate.js"),
    ),
    ("/dashboard/app.js", JS, include_str!("dashboard/app.js")),
    (
        "/dashboard/style.css",
        CSS,
        include_str!("dashboard/style.css"),
    ),
    (
        "/dashboard/vendor/uPlot.iife.min.js",
        JS,
        include_str!("dashboard/vendor/uPlot.iife.min.js"),
    ),
    (
        "/dashboard/vendor/uPlot.min.css",
        CSS,
        include_str!("dashboard/vendor/uPlot.min.css"),
    ),
    (
        "/dashboard/vendor/uPlot-LICENSE",
        TEXT,
        include_str!("dashboard/vendor/uPlot-LICENSE"),
    ),
];

fn file(content_type: &'static str, body: &'static str) -> impl Fn() -> HttpResponse + Clone {
    move || {
        HttpResponse::Ok()
            .content_type(content_type)
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(body)
    }
}

/// `/dashboard`, and the original's `/agendash/`, lead to the dashboard.
async fn to_dashboard() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, "/dashboard/"))
        .finish()
}

pub fn routes(config: &mut web::ServiceConfig) {
    for &(path, content_type, body) in FILES {
        let serve = file(content_type, body);
        config.route(path, web::get().to(move || std::future::ready(serve())));
    }
    config
        .route("/dashboard", web::get().to(to_dashboard))
        .route("/agendash", web::get().to(to_dashboard))
        .route("/agendash/", web::get().to(to_dashboard));
}

#[cfg(test)]
mod tests {
    use super::FILES;

    /// The page loads exactly the files served: a script or style sheet it names that is not
    /// in FILES would be a 404 in the browser.
    #[test]
    fn the_page_names_only_served_files() {
        let page = FILES[0].2;
        for reference in page
            .split(['"', '\''])
            .filter(|s| s.ends_with(".js") || s.ends_with(".css"))
        {
            let path = format!("/dashboard/{reference}");
            assert!(
                FILES.iter().any(|(served, _, _)| *served == path),
                "{path} is not served"
            );
        }
    }
}
