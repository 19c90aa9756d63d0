//! The pages' own style sheet, compiled into the binary: nothing is fetched from
//! elsewhere, and the CSP allows styles from this origin only.

use actix_web::http::header;
use actix_web::HttpResponse;

const APP_CSS: &str = include_str!("../../assets/app.css");

pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/css; charset=utf-8"))
        // Public and short-lived: it holds no personal data, and a new release's sheet
        // is picked up within the hour.
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(APP_CSS)
}
