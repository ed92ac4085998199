//! What the Worker asks of a user's object besides sockets: store a publish's drafts, list
//! the inbox, mark read, delete, and read or change the preferences. Each is one call
//! into the hub; its effects go to the user's sockets.

use serde::de::DeserializeOwned;
use serde_json::json;
use worker::{Request, Response};

use super::UserHub;
use crate::attention::Preferences;
use crate::edge::{internal, internal_error, now_ms, required_header};
use crate::error::ApiError;
use crate::frame::ReadRequest;
use crate::hub;
use crate::model::Draft;

impl UserHub {
    /// Stores the drafts (durably, before answering) and pushes them to every socket.
    pub(super) async fn store(&self, mut req: Request) -> std::result::Result<Response, ApiError> {
        let drafts: Vec<Draft> = json_body(&mut req).await?;
        let config = self.config()?;
        let (receipts, effects) = self.with_hub(config, |hub| {
            hub.publish(drafts, now_ms()).map_err(hub::HubError::from)
        })?;
        if receipts.iter().any(|r| !r.duplicate) {
            self.stats.touch();
        }
        self.apply(None, effects);
        Response::from_json(&receipts).map_err(internal_error)
    }

    /// `GET /v1/notifications`: one inbox page.
    pub(super) fn list(&self, req: &Request) -> std::result::Result<Response, ApiError> {
        let url = req.url().map_err(internal_error)?;
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let request = hub::page_query(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        let config = self.config()?;
        let page = self.with_hub(config, |hub| hub.page(&request, now_ms()))?;
        Response::from_json(&page).map_err(internal_error)
    }

    /// `POST /v1/notifications/read`: the same rules as the `read` frame.
    pub(super) async fn mark_read(
        &self,
        mut req: Request,
    ) -> std::result::Result<Response, ApiError> {
        let request: ReadRequest = json_body(&mut req).await?;
        let config = self.config()?;
        let (outcome, effects) = self.with_hub(config, |hub| hub.read(&request, now_ms()))?;
        self.apply(None, effects);
        Response::from_json(&outcome).map_err(internal_error)
    }

    /// `DELETE /v1/notifications/{id}`.
    pub(super) fn delete(&self, req: &Request) -> std::result::Result<Response, ApiError> {
        let id = required_header(req, internal::ID)?;
        let config = self.config()?;
        let (seq, effects) = self.with_hub(config, |hub| hub.delete(&id, now_ms()))?;
        self.apply(None, effects);
        Response::from_json(&json!({ "deleted": id, "seq": seq })).map_err(internal_error)
    }

    /// `GET /v1/preferences`.
    pub(super) fn get_preferences(&self) -> std::result::Result<Response, ApiError> {
        let config = self.config()?;
        let preferences =
            self.with_hub(config, |hub| hub.preferences().map_err(hub::HubError::from))?;
        Response::from_json(&preferences).map_err(internal_error)
    }

    /// `PUT /v1/preferences`: validated as a whole; a bad body changes nothing.
    pub(super) async fn put_preferences(
        &self,
        mut req: Request,
    ) -> std::result::Result<Response, ApiError> {
        let body = req.bytes().await.map_err(internal_error)?;
        let preferences = Preferences::parse(&body)?;
        let now = now_ms();
        preferences.check_focus_horizon(now)?;
        let config = self.config()?;
        let effects = self.with_hub(config, |hub| {
            hub.set_preferences(preferences.clone(), now)
                .map_err(hub::HubError::from)
        })?;
        self.apply(None, effects);
        Response::from_json(&preferences).map_err(internal_error)
    }
}

async fn json_body<T: DeserializeOwned>(req: &mut Request) -> std::result::Result<T, ApiError> {
    // Parsed by serde_json (depth-limited, and its errors never quote the input) rather
    // than through a JsValue, whose error formats the whole value: a deeply nested body
    // overflowed the JS stack in that formatting and the request never answered.
    let body = req.bytes().await.map_err(internal_error)?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(400, "bad_request", format!("body: {e}")))
}
