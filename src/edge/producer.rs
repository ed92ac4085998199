//! `POST /v1/publish`: the producer's front door. The request is checked by
//! [`crate::auth::authorize_producer`] and parsed by [`crate::publish`]; this stores each
//! message in its rooms and its recipients' hubs, all at once, and answers 202 with what
//! they answered.

use std::collections::HashMap;

use futures_util::future::join_all;
use serde_json::json;
use worker::{Env, Method, Request, Response};

use super::call::{to_hub, to_room};
use super::{api, internal, internal_error, json_response, log, random_id, room_hub};
use crate::auth;
use crate::config::Config;
use crate::error::ApiError;
use crate::model::{Draft, Receipt};
use crate::publish::{PublishRequest, Receipts};

/// Validates, stores in every room and recipient's hub, then answers 202.
pub(crate) async fn publish(
    req: Request,
    env: &Env,
    config: &Config,
) -> Result<Response, ApiError> {
    let authorization = super::header(req.headers(), "Authorization");
    let publish_key = super::secret(env, "PUBLISH_KEY").unwrap_or_default();
    auth::authorize_producer(authorization.as_deref(), &publish_key, |token| {
        api::verify(env, token)
    })?;
    let body = super::http::bounded_body(req, config.limits.max_publish_bytes).await?;
    let request = PublishRequest::parse(&body, &config.limits, || random_id("ntf_"))?;

    let mut receipts = Receipts {
        rooms: publish_to_rooms(env, &request).await?,
        ..Receipts::default()
    };
    let groups = request.by_recipient();
    let stores = groups.iter().map(|(user, drafts)| store(env, user, drafts));
    // Each hub answers one receipt per draft, in the order sent.
    for ((user, drafts), answer) in groups.iter().zip(join_all(stores).await) {
        let answer = answer?;
        if answer.len() != drafts.len() {
            return Err(ApiError::internal("a hub did not store every message"));
        }
        for (draft, receipt) in drafts.iter().zip(answer) {
            receipts.users.insert((draft.id.as_str(), *user), receipt);
        }
    }
    let body = request
        .answer(&receipts)
        .ok_or_else(|| ApiError::internal("an object did not store every message"))?;
    log::event(
        "publish",
        json!({ "messages": request.messages.len(), "recipients": groups.len() }),
    );
    json_response(202, &body)
}

/// Stores each room message in its room (fanning it out there) and files `inbox:true`
/// ones in every member's inbox. Answers, per draft id, the room's receipt and how many
/// members it was filed for.
async fn publish_to_rooms<'a>(
    env: &Env,
    request: &'a PublishRequest,
) -> Result<HashMap<&'a str, (Receipt, usize)>, ApiError> {
    let mut answers = HashMap::new();
    let mut filings: HashMap<String, Vec<Draft>> = HashMap::new();
    for (room, messages) in request.by_room() {
        let drafts: Vec<&Draft> = messages.iter().map(|m| &m.draft).collect();
        let body = serde_json::to_vec(&drafts).map_err(internal_error)?;
        let members: &[(&str, &str)] = match messages.iter().any(|m| m.inbox) {
            true => &[(internal::MEMBERS, "1")],
            false => &[],
        };
        let mut response =
            to_room(env, room, Method::Post, "/publish", members, Some(body)).await?;
        if response.status_code() != 200 {
            return Err(ApiError::unavailable(format!(
                "room answered {}",
                response.status_code()
            )));
        }
        let stored: room_hub::RoomReceipts = response.json().await.map_err(internal_error)?;
        for (m, receipt) in messages.iter().zip(stored.receipts) {
            let mut filed_for = 0;
            if m.inbox {
                let filed = m.filing(room, &receipt);
                for member in &stored.members {
                    filings
                        .entry(member.clone())
                        .or_default()
                        .push(filed.clone());
                }
                filed_for = stored.members.len();
            }
            answers.insert(m.draft.id.as_str(), (receipt, filed_for));
        }
    }
    let stores = filings.iter().map(|(member, drafts)| {
        let drafts: Vec<&Draft> = drafts.iter().collect();
        async move { store(env, member, &drafts).await }
    });
    for result in join_all(stores).await {
        result?;
    }
    Ok(answers)
}

/// Stores one user's drafts in that user's hub and returns the receipts.
async fn store(env: &Env, user: &str, drafts: &[&Draft]) -> Result<Vec<Receipt>, ApiError> {
    let body = serde_json::to_vec(drafts).map_err(internal_error)?;
    let mut response = to_hub(env, user, Method::Post, "/publish", &[], Some(body)).await?;
    if response.status_code() != 200 {
        return Err(ApiError::unavailable(format!(
            "user hub answered {}",
            response.status_code()
        )));
    }
    response.json().await.map_err(internal_error)
}
