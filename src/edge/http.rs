//! The HTTP side of the Worker's answers: bodies read within their bound, assets, the
//! CORS preflight and the headers that let an allowed origin read an answer.

use worker::{Headers, Request, Response, Result};

use super::{header, internal_error};
use crate::error::ApiError;
use crate::model;

/// Reads a request body of at most `limit` bytes (413 beyond).
pub(crate) async fn bounded_body(
    mut req: Request,
    limit: usize,
) -> std::result::Result<Vec<u8>, ApiError> {
    let too_large = |size| model::InputError::TooLarge { size, limit }.into();
    let declared = header(req.headers(), "Content-Length").and_then(|l| l.parse::<usize>().ok());
    if let Some(size) = declared.filter(|&size| size > limit) {
        return Err(too_large(size));
    }
    let body = req
        .bytes()
        .await
        .map_err(|_| ApiError::new(400, "bad_request", "could not read the body"))?;
    if body.len() > limit {
        return Err(too_large(body.len()));
    }
    Ok(body)
}

pub(crate) fn asset(body: &str, content_type: &str) -> std::result::Result<Response, ApiError> {
    let headers = Headers::new();
    headers
        .set("Content-Type", content_type)
        .map_err(internal_error)?;
    headers
        .set("Cache-Control", "no-store")
        .map_err(internal_error)?;
    Ok(Response::ok(body)
        .map_err(internal_error)?
        .with_headers(headers))
}

pub(crate) fn preflight() -> std::result::Result<Response, ApiError> {
    let headers = Headers::new();
    for (name, value) in [
        (
            "Access-Control-Allow-Methods",
            "GET, POST, PUT, DELETE, OPTIONS",
        ),
        (
            "Access-Control-Allow-Headers",
            "Authorization, Content-Type",
        ),
        ("Access-Control-Max-Age", "600"),
    ] {
        headers.set(name, value).map_err(internal_error)?;
    }
    Ok(Response::empty()
        .map_err(internal_error)?
        .with_status(204)
        .with_headers(headers))
}

/// Lets an allowed browser origin read the answer (disallowed ones never get this far).
/// The headers are copied first: an answer passed through from a Durable Object carries
/// immutable ones, and setting a header on those throws (a 500 for every such route).
pub(crate) fn with_cors(response: Response, origin: Option<&str>) -> Result<Response> {
    let Some(origin) = origin else {
        return Ok(response);
    };
    let headers = response.headers().clone();
    headers.set("Access-Control-Allow-Origin", origin)?;
    headers.append("Vary", "Origin")?;
    Ok(response.with_headers(headers))
}
