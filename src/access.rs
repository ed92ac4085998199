//! Who may do what: the one table of credentials and rights (`docs/api.md`, "Who may do
//! what"), and the one check every route's caller goes through.
//!
//! A request's credential is first told apart ([`identify`]: the producer key, the admin
//! key, a user token, or nothing), then held against the [`Right`] its route asks for
//! ([`authorize`]). Routes name their right in [`crate::route::Route::right`]; nothing else
//! decides access.
#![warn(missing_docs)]

use crate::auth::{self, AuthError, Claims};

/// The token scope that makes a user token a producer credential.
pub const PUBLISH_SCOPE: &str = "publish";
/// The token scope that lets a backend's token read and replace room member lists.
pub const MEMBERS_SCOPE: &str = "members";

/// A request's credential, told apart and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// None was presented.
    Nothing,
    /// Something that is neither key nor a JWT.
    Unrecognized,
    /// `PUBLISH_KEY`: the producer's.
    ProducerKey,
    /// `ADMIN_KEY`: the operator's.
    AdminKey,
    /// A verified user token.
    Token(Claims),
}

impl Credential {
    /// The verified claims, for a user token.
    pub fn claims(&self) -> Option<&Claims> {
        match self {
            Self::Token(claims) => Some(claims),
            _ => None,
        }
    }
}

/// What a route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// Open to anyone: health, the API description, the CORS preflight, dev-mode pages.
    Anyone,
    /// Any valid user token, for the user it names: their inbox, preferences and sockets
    /// (and, in dev mode only, the demo page's publish).
    User,
    /// A user token whose `rooms` claim grants the room.
    Room,
    /// Publishing to any user or room: the producer key, or a token with `publish`.
    Publish,
    /// Reading and replacing a room's member list: the producer key, or a token with
    /// `members`.
    Members,
    /// Publishing to everyone (`to.broadcast`): the producer key only. Checked on top of
    /// [`Right::Publish`] for a request that broadcasts
    /// ([`crate::route::Route::may_broadcast`]).
    Broadcast,
    /// Deployment-wide counters: the admin key only.
    Stats,
}

impl Right {
    /// Every right, in the table's order.
    pub const ALL: [Right; 7] = [
        Right::Anyone,
        Right::User,
        Right::Room,
        Right::Publish,
        Right::Members,
        Right::Broadcast,
        Right::Stats,
    ];
}

/// The table: whether `credential` carries `right` (for [`Right::Room`], before the room
/// itself is checked against the token's grants).
pub fn holds(credential: &Credential, right: Right) -> bool {
    match (right, credential) {
        (Right::Anyone, _) => true,
        (Right::User | Right::Room, Credential::Token(_)) => true,
        (Right::Publish | Right::Members | Right::Broadcast, Credential::ProducerKey) => true,
        (Right::Publish, Credential::Token(claims)) => claims.has_scope(PUBLISH_SCOPE),
        (Right::Members, Credential::Token(claims)) => claims.has_scope(MEMBERS_SCOPE),
        (Right::Stats, Credential::AdminKey) => true,
        _ => false,
    }
}

/// Tells apart the credential `presented`: a key compared in constant time with
/// `publish_key` and `admin_key` (an empty key is never matched), else a JWT, which
/// `verify` checks (its failure is the caller's answer: expired, bad signature…).
pub fn identify<E: From<AuthError>>(
    presented: Option<&str>,
    publish_key: &str,
    admin_key: &str,
    verify: impl FnOnce(&str) -> Result<Claims, E>,
) -> Result<Credential, E> {
    let Some(presented) = presented.filter(|p| !p.is_empty()) else {
        return Ok(Credential::Nothing);
    };
    if auth::key_matches(presented, admin_key) {
        return Ok(Credential::AdminKey);
    }
    if auth::key_matches(presented, publish_key) {
        return Ok(Credential::ProducerKey);
    }
    // Three dot-separated parts: a JWT rather than a mistyped key.
    if presented.split('.').count() == 3 {
        return verify(presented).map(Credential::Token);
    }
    Ok(Credential::Unrecognized)
}

/// The deployment's keys, as set (an empty one is unset).
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a> {
    /// `PUBLISH_KEY`.
    pub publish_key: &'a str,
    /// `ADMIN_KEY`; without it the stats route does not exist.
    pub admin_key: &'a str,
}

/// The whole check of a route's caller: the credential `presented` told apart (a token
/// checked by `verify`), then held against the route's `right` and `room`. Answers the
/// credential, whose claims are the only source of the caller's user id.
pub fn check<E: From<AuthError>>(
    presented: Option<&str>,
    keys: Keys<'_>,
    right: Right,
    room: Option<&str>,
    verify: impl FnOnce(&str) -> Result<Claims, E>,
) -> Result<Credential, E> {
    if right == Right::Anyone {
        return Ok(Credential::Nothing);
    }
    if right == Right::Stats && keys.admin_key.trim().is_empty() {
        return Err(AuthError::StatsOff.into());
    }
    let credential = identify(
        presented,
        keys.publish_key.trim(),
        keys.admin_key.trim(),
        verify,
    )?;
    authorize(&credential, right, room)?;
    Ok(credential)
}

/// Holds `credential` against `right` (and, for a room right, `room`): the one check of
/// every route. Missing or unrecognized credentials are 401s; a valid one without the
/// right is a 403, so its holder learns it is valid but not enough.
pub fn authorize(
    credential: &Credential,
    right: Right,
    room: Option<&str>,
) -> Result<(), AuthError> {
    if !holds(credential, right) {
        return Err(match (credential, right) {
            (Credential::Nothing, _) => AuthError::MissingToken,
            (Credential::Unrecognized, Right::User | Right::Room) => AuthError::Malformed,
            (Credential::Unrecognized, _) => AuthError::BadKey,
            (Credential::Token(_), Right::Publish) => AuthError::MissingScope(PUBLISH_SCOPE),
            (Credential::Token(_), Right::Members) => AuthError::MissingScope(MEMBERS_SCOPE),
            _ => AuthError::NotAllowed(right_name(right)),
        });
    }
    if right == Right::Room {
        let granted = credential
            .claims()
            .map(|c| c.rooms.as_slice())
            .unwrap_or_default();
        if !room.is_some_and(|room| grants(granted, room)) {
            return Err(AuthError::RoomNotGranted);
        }
    }
    Ok(())
}

/// Whether a token's `rooms` claim grants `room`: an exact name, or `prefix*` for every
/// room that starts with `prefix` (so `project:*` grants `project:42`, not `projects:1`).
pub fn grants(granted: &[String], room: &str) -> bool {
    granted.iter().any(|g| match g.strip_suffix('*') {
        Some(prefix) => room.len() > prefix.len() && room.starts_with(prefix),
        None => g == room,
    })
}

/// What a right allows, as a refusal says it.
pub fn right_name(right: Right) -> &'static str {
    match right {
        Right::Anyone => "anything",
        Right::User => "act as a user (a user token is needed)",
        Right::Room => "join rooms (a user token is needed)",
        Right::Publish => "publish",
        Right::Members => "manage room members",
        Right::Broadcast => "broadcast to everyone (the producer key is needed)",
        Right::Stats => "read the stats (the admin key is needed)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(scope: &[&str], rooms: &[&str]) -> Credential {
        Credential::Token(Claims {
            sub: "alice".into(),
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
            scope: scope.iter().map(|s| s.to_string()).collect(),
            exp: 0,
        })
    }

    fn granted(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn grant_matching() {
        let g = granted(&["project:*", "team:7"]);
        assert!(grants(&g, "project:42"));
        assert!(!grants(&g, "projects:1"));
        assert!(!grants(&g, "project:"));
        assert!(grants(&g, "team:7"));
        assert!(!grants(&g, "team:70"));
        assert!(!grants(&[], "project:42"));
    }

    #[test]
    fn keys_are_told_apart_from_tokens_and_garbage() {
        let never = |_: &str| -> Result<Claims, AuthError> { panic!("not a token") };
        let id = |p| identify(p, "pk", "ak", never);
        assert_eq!(id(None), Ok(Credential::Nothing));
        assert_eq!(id(Some("pk")), Ok(Credential::ProducerKey));
        assert_eq!(id(Some("ak")), Ok(Credential::AdminKey));
        assert_eq!(id(Some("guess")), Ok(Credential::Unrecognized));
        // An unset key matches nothing, not even an empty credential.
        assert_eq!(
            identify(Some("x"), "", "", never),
            Ok(Credential::Unrecognized)
        );
        let expired = |_: &str| Err::<Claims, _>(AuthError::Expired);
        assert_eq!(
            identify(Some("a.b.c"), "pk", "ak", expired),
            Err(AuthError::Expired)
        );
    }

    #[test]
    fn end_user_tokens_cannot_climb() {
        let user = token(&[], &["project:*"]);
        assert_eq!(authorize(&user, Right::User, None), Ok(()));
        assert_eq!(authorize(&user, Right::Room, Some("project:1")), Ok(()));
        assert_eq!(
            authorize(&user, Right::Room, Some("other:1")),
            Err(AuthError::RoomNotGranted)
        );
        assert_eq!(
            authorize(&user, Right::Publish, None),
            Err(AuthError::MissingScope("publish"))
        );
        assert_eq!(
            authorize(&user, Right::Members, None),
            Err(AuthError::MissingScope("members"))
        );
        // `publish` does not reach the member lists.
        let publisher = token(&["publish"], &[]);
        assert_eq!(authorize(&publisher, Right::Publish, None), Ok(()));
        assert_eq!(
            authorize(&publisher, Right::Members, None),
            Err(AuthError::MissingScope("members"))
        );
        assert!(matches!(
            authorize(&publisher, Right::Stats, None),
            Err(AuthError::NotAllowed(_))
        ));
        assert_eq!(
            authorize(&token(&["members"], &[]), Right::Members, None),
            Ok(())
        );
    }

    #[test]
    fn without_an_admin_key_the_stats_route_is_off() {
        let never = |_: &str| -> Result<Claims, AuthError> { panic!("not a token") };
        for admin_key in ["", "  "] {
            let keys = Keys {
                publish_key: "pk",
                admin_key,
            };
            assert_eq!(
                check(Some(admin_key), keys, Right::Stats, None, never),
                Err(AuthError::StatsOff)
            );
        }
        let keys = Keys {
            publish_key: "pk",
            admin_key: "ak",
        };
        assert_eq!(
            check(Some("ak"), keys, Right::Stats, None, never),
            Ok(Credential::AdminKey)
        );
        assert!(matches!(
            check(Some("pk"), keys, Right::Stats, None, never),
            Err(AuthError::NotAllowed(_))
        ));
        assert_eq!(
            check(Some("guess"), keys, Right::Stats, None, never),
            Err(AuthError::BadKey)
        );
    }

    #[test]
    fn keys_hold_only_their_own_rights() {
        let table = |c: &Credential| Right::ALL.map(|r| holds(c, r));
        assert_eq!(
            table(&Credential::ProducerKey),
            [true, false, false, true, true, true, false]
        );
        assert_eq!(
            table(&Credential::AdminKey),
            [true, false, false, false, false, false, true]
        );
        assert_eq!(
            table(&Credential::Nothing),
            [true, false, false, false, false, false, false]
        );
        assert_eq!(
            authorize(&Credential::Nothing, Right::Stats, None),
            Err(AuthError::MissingToken)
        );
        assert_eq!(
            authorize(&Credential::Unrecognized, Right::Publish, None),
            Err(AuthError::BadKey)
        );
        assert_eq!(
            authorize(&Credential::Unrecognized, Right::User, None),
            Err(AuthError::Malformed)
        );
    }
}
