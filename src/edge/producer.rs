//! `POST /v1/publish`: the producer's front door. Its caller has been checked by
//! [`crate::access::check`] and the request is parsed by [`crate::publish`]; this stores each
//! message in its rooms and its recipients' hubs, all at once, and answers 202 with what
//! they answered.

use std::collections::HashMap;

use futures_util::future::{join, join_all};
use serde::Deserialize;
use serde_json::json;
use worker::{Env, Method, Request, Response};

use super::call::{self, to_hub, to_room};
use super::{internal_error, json_response, log, random_id};
use crate::access::Credential;
use crate::config::Config;
use crate::error::ApiError;
use crate::model::{Draft, Receipt};
use crate::publish::{PublishRequest, Receipts};
use crate::route::Route;

/// Validates and bounds the whole request, then stores it in every room, recipient and
/// filed member's inbox; 202 when all stored, else 503 with what was.
pub(crate) async fn publish(
    req: Request,
    env: &Env,
    config: &Config,
    caller: &Credential,
    route: Route,
) -> Result<Response, ApiError> {
    let body = super::http::bounded_body(req, config.limits.max_publish_bytes).await?;
    let request = PublishRequest::parse(&body, &config.limits, || random_id("ntf_"))?;
    if request.broadcasts() {
        route.may_broadcast(caller)?;
    }
    // Read before anything is written, so that the bound holds for the whole request.
    let members = members(env, &request.filed_rooms()).await?;
    request.check_reach(&members, &config.limits)?;

    let mut receipts = Receipts {
        rooms: publish_to_rooms(env, &request).await,
        ..Receipts::default()
    };
    let groups = request.by_recipient();
    let filings = request.filings(&members, &receipts.rooms);
    let users = groups.iter().map(|(user, drafts)| store(env, user, drafts));
    let filed = filings.iter().map(|(member, drafts)| {
        let drafts: Vec<&Draft> = drafts.iter().map(|(_, draft)| draft).collect();
        async move { store(env, member, &drafts).await }
    });
    let (users, filed) = join(join_all(users), join_all(filed)).await;
    for ((user, drafts), answer) in groups.iter().zip(users) {
        // Each hub answers one receipt per draft, in the order sent.
        for (draft, receipt) in drafts.iter().zip(answer.unwrap_or_default()) {
            receipts.users.insert((draft.id.as_str(), *user), receipt);
        }
    }
    for ((_, drafts), answer) in filings.iter().zip(filed) {
        if answer.is_ok_and(|stored| stored.len() == drafts.len()) {
            for (message, _) in drafts {
                *receipts.filed.entry(message).or_default() += 1;
            }
        }
    }
    let answer = request.answer(&receipts, &members);
    match answer.complete {
        true => json_response(202, &answer.body),
        false => Err(ApiError::unavailable(
            "not every target stored; retry with the same idempotency_key values to complete it",
        )
        .with_stored(answer.body)),
    }
}

/// The member lists of `rooms`, read from each room (none written).
async fn members(env: &Env, rooms: &[&str]) -> Result<HashMap<String, Vec<String>>, ApiError> {
    let reads = rooms.iter().map(|room| async move {
        let response = to_room(env, room, Method::Get, "/members", &[], None).await?;
        let list: MemberList = call::json(&response).await?;
        Ok::<_, ApiError>((room.to_string(), list.members))
    });
    join_all(reads).await.into_iter().collect()
}

#[derive(Deserialize)]
struct MemberList {
    members: Vec<String>,
}

/// Stores each room's messages in that room (fanning them out there): the receipt of
/// each stored draft, by draft id. A room that fails is logged and has no receipts.
async fn publish_to_rooms<'a>(env: &Env, request: &'a PublishRequest) -> HashMap<&'a str, Receipt> {
    let groups = request.by_room();
    let stores = groups.iter().map(|(room, messages)| async move {
        let drafts: Vec<&Draft> = messages.iter().map(|m| &m.draft).collect();
        let body = serde_json::to_vec(&drafts).map_err(internal_error)?;
        let response = to_room(env, room, Method::Post, "/publish", &[], Some(body)).await?;
        call::json::<Vec<Receipt>>(&response).await
    });
    let mut receipts = HashMap::new();
    for ((_, messages), answer) in groups.iter().zip(join_all(stores).await) {
        match answer {
            Ok(stored) => {
                for (m, receipt) in messages.iter().zip(stored) {
                    receipts.insert(m.draft.id.as_str(), receipt);
                }
            }
            Err(e) => log::event(
                "error",
                json!({ "message": format!("room publish: {}", e.message) }),
            ),
        }
    }
    receipts
}

/// Stores one user's drafts in that user's hub and returns the receipts; a failure is
/// logged.
async fn store(env: &Env, user: &str, drafts: &[&Draft]) -> Result<Vec<Receipt>, ApiError> {
    let body = serde_json::to_vec(drafts).map_err(internal_error)?;
    let stored = async {
        let response = to_hub(env, user, Method::Post, "/publish", &[], Some(body)).await?;
        call::json::<Vec<Receipt>>(&response).await
    };
    let stored = stored.await;
    if let Err(e) = &stored {
        log::event(
            "error",
            json!({ "message": format!("hub publish: {}", e.message) }),
        );
    }
    stored
}
