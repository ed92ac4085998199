//! What the Worker asks of a room's root besides sockets: store a producer's publish (and
//! name the members to file it for), the presence list, and the member list.

use serde_json::json;
use worker::{Method, Request, Response};

use super::RoomHub;
use crate::edge::{internal_error, now_ms};
use crate::error::ApiError;
use crate::model::Draft;
use crate::room_store::RoomStore;

impl RoomHub {
    /// Root: a producer's room publish. Stores in history, fans out, and answers the
    /// receipts (the Worker files `inbox:true` messages with the member list it read first).
    pub(super) async fn publish(
        &self,
        mut req: Request,
    ) -> std::result::Result<Response, ApiError> {
        let drafts: Vec<Draft> = req
            .json()
            .await
            .map_err(|e| ApiError::new(400, "bad_request", e.to_string()))?;
        let (receipts, effects) = self.with_room(|room| room.publish(drafts, now_ms()))?;
        self.execute(None, effects).await?;
        self.schedule().await?;
        Response::from_json(&receipts).map_err(internal_error)
    }

    pub(super) fn presence(&self) -> std::result::Result<Response, ApiError> {
        let users = match self.untouched() {
            true => Vec::new(),
            false => self.with_room(|room| room.online_users())?,
        };
        Response::from_json(&json!({ "users": users })).map_err(internal_error)
    }

    pub(super) async fn members(
        &self,
        mut req: Request,
    ) -> std::result::Result<Response, ApiError> {
        let update: Option<Vec<String>> = match req.method() {
            Method::Put => Some(
                req.json()
                    .await
                    .map_err(|e| ApiError::new(400, "bad_request", e.to_string()))?,
            ),
            _ => None,
        };
        if update.is_none() && self.untouched() {
            return Response::from_json(&json!({ "members": [] })).map_err(internal_error);
        }
        let members = self.with_room(|room| {
            if let Some(members) = &update {
                room.store.set_members(members)?;
            }
            Ok(room.store.members()?)
        })?;
        Response::from_json(&json!({ "members": members })).map_err(internal_error)
    }
}
