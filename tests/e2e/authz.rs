//! The authorization matrix: every endpoint of the route table, called as every kind of
//! caller, against an expected-rule table written from DESIGN.md's role rules.
//!
//! The route table is what the server declares: the OpenAPI document it serves and the
//! `web::resource(...)` registrations in the crates' sources (which also catch a route
//! that was registered but never documented). Every (method, path) of either must have a
//! rule in [`RULES`], and every rule must name a real route, so a new endpoint without a
//! rule fails this test.
//!
//! Callers: anonymous; an account that has not yet changed its one-time password; a user
//! who is in no fixture room (non-member); a room member, moderator and owner; an admin,
//! a compliance officer and an auditor (none of them members of the fixture rooms). Path
//! parameters are real ids made by the test's own setup; after a call that may have
//! changed state (a write answered 2xx) the next caller gets fresh rooms, messages,
//! groups and holds, so one caller's success never decides another's answer.
//!
//! Expected answers: 401 `unauthenticated` without a session; 403 (`forbidden`, or
//! `password_change_required` for an unconfirmed account) for a role that may not; 404
//! `not_found` for a non-member anywhere in a room (DESIGN.md: a room's existence does not
//! leak); and for an allowed caller one of the rule's statuses, which never include 401
//! or 403 (the sign-in endpoints, which answer everyone alike, are the one exception).

use crate::harness::{ADMIN_PASSWORD, Server};
use conclave_testkit::TestBackend;
use reqwest::blocking::Client;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

crate::on_both_backends_in!(authz_matrix: every_endpoint_answers_every_caller_as_the_role_rules_say);

/// Who makes a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Actor {
    Anonymous,
    /// A new account that has not changed its one-time password yet.
    Unconfirmed,
    /// A user who is a member of no fixture room.
    Outsider,
    Auditor,
    Compliance,
    Admin,
    Member,
    Moderator,
    Owner,
}

/// Callers that only read come first; then those most likely to be allowed.
const ACTORS: [Actor; 9] = [
    Actor::Anonymous,
    Actor::Unconfirmed,
    Actor::Outsider,
    Actor::Auditor,
    Actor::Compliance,
    Actor::Admin,
    Actor::Member,
    Actor::Moderator,
    Actor::Owner,
];

/// A room role, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Member,
    Moderator,
    Owner,
}

/// Who an endpoint is for (DESIGN.md, Roles; docs/api.md for room roles).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    /// No session needed: every caller gets the same answer.
    Public,
    /// Any session, even one that must change its password first.
    Session,
    /// Any account that may act.
    User,
    Admin,
    Compliance,
    Auditor,
    /// Room members at or above the level; other members 403; everybody else 404.
    Room(Level),
    /// Only the fixture message's sender (the member); other members 403.
    Sender,
}

/// What a caller must get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Allowed,
    Unauthenticated,
    Forbidden(&'static str),
    Hidden,
}

fn room_level(actor: Actor) -> Option<Level> {
    match actor {
        Actor::Member => Some(Level::Member),
        Actor::Moderator => Some(Level::Moderator),
        Actor::Owner => Some(Level::Owner),
        _ => None,
    }
}

/// The role rules of DESIGN.md as a function of (access, caller).
fn expected(access: Access, actor: Actor) -> Expect {
    match (access, actor) {
        (Access::Public, _) => Expect::Allowed,
        (_, Actor::Anonymous) => Expect::Unauthenticated,
        (Access::Session, _) => Expect::Allowed,
        (_, Actor::Unconfirmed) => Expect::Forbidden("password_change_required"),
        (Access::User, _) => Expect::Allowed,
        (Access::Admin, Actor::Admin)
        | (Access::Compliance, Actor::Compliance)
        | (Access::Auditor, Actor::Auditor) => Expect::Allowed,
        (Access::Admin | Access::Compliance | Access::Auditor, _) => Expect::Forbidden("forbidden"),
        (Access::Room(needed), actor) => match room_level(actor) {
            None => Expect::Hidden,
            Some(level) if level >= needed => Expect::Allowed,
            Some(_) => Expect::Forbidden("forbidden"),
        },
        (Access::Sender, Actor::Member) => Expect::Allowed,
        (Access::Sender, actor) => match room_level(actor) {
            None => Expect::Hidden,
            Some(_) => Expect::Forbidden("forbidden"),
        },
    }
}

/// What a call sends besides its path.
#[derive(Clone, Copy)]
enum Body {
    None,
    Json(fn(&Fixture) -> Value),
    /// A file upload: content type and bytes.
    Raw(&'static str, &'static [u8]),
    /// A WebSocket handshake.
    Upgrade,
}

struct Rule {
    method: &'static str,
    /// The path as the OpenAPI document writes it.
    path: &'static str,
    access: Access,
    /// Statuses an allowed caller may get.
    ok: &'static [u16],
    /// Query string with `{placeholders}`, without the `?`.
    query: &'static str,
    body: Body,
    /// Each caller uses a session of its own made for this call (the call may end it).
    own_session: bool,
    /// Brings the fixture into the state the call needs, before each caller's call.
    prepare: fn(&World, &Fixture),
}

const fn rule(
    method: &'static str,
    path: &'static str,
    access: Access,
    ok: &'static [u16],
) -> Rule {
    Rule {
        method,
        path,
        access,
        ok,
        query: "",
        body: Body::None,
        own_session: false,
        prepare: |_, _| {},
    }
}

impl Rule {
    const fn json(mut self, body: fn(&Fixture) -> Value) -> Self {
        self.body = Body::Json(body);
        self
    }
    const fn query(mut self, query: &'static str) -> Self {
        self.query = query;
        self
    }
    const fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }
    const fn own_session(mut self) -> Self {
        self.own_session = true;
        self
    }
    const fn prepare(mut self, prepare: fn(&World, &Fixture)) -> Self {
        self.prepare = prepare;
        self
    }
}

const OK: &[u16] = &[200];
const CREATED: &[u16] = &[201];
const NO_CONTENT: &[u16] = &[204];
const MEMBER: Access = Access::Room(Level::Member);
const MODERATOR: Access = Access::Room(Level::Moderator);
const OWNER: Access = Access::Room(Level::Owner);

/// The expected-rule table: one row per (method, path) of the route table.
#[rustfmt::skip]
const RULES: &[Rule] = &[
    // Probes, the document, the web client and metrics: open to all (metrics are counts
    // only; docs/security.md says to keep /metrics off the public network).
    rule("GET", "/healthz", Access::Public, OK),
    rule("GET", "/readyz", Access::Public, OK),
    rule("GET", "/metrics", Access::Public, OK),
    rule("GET", "/api/v1/openapi.json", Access::Public, OK),
    rule("GET", "/api/v1/docs/", Access::Public, OK),
    rule("GET", "/", Access::Public, OK),
    rule("GET", "/assets/{name}", Access::Public, OK),
    // Signing in: no session needed. Single sign-on is not configured in this test, so
    // its endpoints answer 404 (or 401 for an exchange that names no flow) to everyone.
    // A right password for an account nobody else logs in to: nine logins a minute stay
    // within the per-account login rate.
    rule("POST", "/api/v1/auth/login", Access::Public, OK)
        .json(|_| json!({"username": "signin", "password": SIGNIN_PASSWORD})),
    rule("GET", "/api/v1/auth/providers", Access::Public, OK),
    rule("POST", "/api/v1/auth/ldap/login", Access::Public, &[404])
        .json(|_| json!({"username": "signin", "password": SIGNIN_PASSWORD})),
    rule("GET", "/api/v1/auth/oidc/{provider}/login", Access::Public, &[404]),
    rule("POST", "/api/v1/auth/oidc/{provider}/start", Access::Public, &[404])
        .json(|_| json!({"redirect_uri": "http://127.0.0.1:9/callback"})),
    rule("GET", "/api/v1/auth/oidc/{provider}/callback", Access::Public, &[404])
        .query("code=c&state=s"),
    rule("POST", "/api/v1/auth/oidc/exchange", Access::Public, &[401])
        .json(|_| json!({"state": "no-such-flow", "flow_secret": "x", "code": "y"})),
    // One's own account and sessions.
    rule("POST", "/api/v1/auth/logout", Access::Session, &[200, 204]).own_session(),
    rule("GET", "/api/v1/me", Access::Session, OK),
    // A too-short new password is refused before the current one is checked (which
    // would count a failure against the throttle).
    rule("POST", "/api/v1/me/password", Access::Session, &[422])
        .json(|_| json!({"current_password": "not checked", "new_password": "short"})),
    rule("GET", "/api/v1/me/sessions", Access::Session, OK),
    rule("DELETE", "/api/v1/me/sessions/{session_id}", Access::Session, NO_CONTENT).own_session(),
    rule("GET", "/api/v1/me/policy", Access::User, OK),
    rule("GET", "/api/v1/users", Access::User, OK).query("q=target"),
    // Conversations any user may start.
    rule("GET", "/api/v1/ws", Access::User, &[101]).body(Body::Upgrade),
    rule("GET", "/api/v1/rooms", Access::User, OK),
    rule("POST", "/api/v1/rooms", Access::User, CREATED).json(|_| json!({"name": "matrix room"})),
    rule("POST", "/api/v1/direct", Access::User, &[200, 201])
        .json(|f| json!({"user_id": f.get("user_id")})),
    // Inside a room: members, moderators, owners (docs/api.md); non-members get 404.
    rule("GET", "/api/v1/rooms/{room_id}", MEMBER, OK),
    rule("PATCH", "/api/v1/rooms/{room_id}", MODERATOR, OK).json(|_| json!({"topic": "matrix"})),
    rule("POST", "/api/v1/rooms/{room_id}/members", MODERATOR, NO_CONTENT)
        .json(|f| json!({"user_id": f.get("spare_id")})),
    rule("PUT", "/api/v1/rooms/{room_id}/members/{user_id}", OWNER, NO_CONTENT)
        .json(|_| json!({"role": "moderator"})),
    rule("DELETE", "/api/v1/rooms/{room_id}/members/{user_id}", MODERATOR, &[200, 204]),
    // The last owner may not leave (409); everyone else may.
    rule("POST", "/api/v1/rooms/{room_id}/leave", MEMBER, &[200, 204, 409]),
    rule("GET", "/api/v1/rooms/{room_id}/policy", MEMBER, OK),
    rule("PUT", "/api/v1/rooms/{room_id}/policy", OWNER, OK).json(|_| json!({})),
    rule("GET", "/api/v1/rooms/{room_id}/messages", MEMBER, OK),
    rule("POST", "/api/v1/rooms/{room_id}/messages", MEMBER, CREATED)
        .json(|_| json!({"text": "hello", "idempotency_key": uuid::Uuid::new_v4().to_string()})),
    rule("GET", "/api/v1/rooms/{room_id}/messages/{message_id}", MEMBER, OK),
    rule("PATCH", "/api/v1/rooms/{room_id}/messages/{message_id}", Access::Sender, OK)
        .json(|_| json!({"text": "edited"})),
    // Delete: the sender (the member), or a moderator or owner.
    rule("DELETE", "/api/v1/rooms/{room_id}/messages/{message_id}", MEMBER, &[200, 204]),
    rule("PUT", "/api/v1/rooms/{room_id}/messages/{message_id}/reactions/{emoji}", MEMBER, &[200, 204]),
    rule("DELETE", "/api/v1/rooms/{room_id}/messages/{message_id}/reactions/{emoji}", MEMBER, &[200, 204]),
    rule("POST", "/api/v1/rooms/{room_id}/read", MEMBER, OK).json(|_| json!({"seq": 1})),
    rule("POST", "/api/v1/rooms/{room_id}/attachments", MEMBER, CREATED)
        .query("name=notes.txt")
        .body(Body::Raw("text/plain", b"matrix attachment")),
    rule("GET", "/api/v1/rooms/{room_id}/attachments/{attachment_id}", MEMBER, OK),
    // Admins: users, identity, security groups and messaging policy.
    rule("GET", "/api/v1/admin/users", Access::Admin, OK),
    rule("POST", "/api/v1/admin/users", Access::Admin, CREATED)
        .json(|_| json!({"username": "matrix.created", "display_name": "Created"})),
    rule("GET", "/api/v1/admin/users/{user_id}", Access::Admin, OK),
    rule("PUT", "/api/v1/admin/users/{user_id}/roles", Access::Admin, OK)
        .json(|_| json!({"roles": ["auditor"]})),
    rule("POST", "/api/v1/admin/users/{user_id}/suspend", Access::Admin, OK),
    rule("POST", "/api/v1/admin/users/{user_id}/reactivate", Access::Admin, OK).prepare(|w, f| {
        // Suspended first, so that reactivating is what the admin's call does.
        let path = format!("/api/v1/admin/users/{}/suspend", f.get("user_id"));
        w.server.send("POST", &path, Some(w.token(Actor::Admin)), None);
    }),
    rule("DELETE", "/api/v1/admin/users/{user_id}/sessions", Access::Admin, &[200, 204]),
    rule("PUT", "/api/v1/admin/users/{user_id}/break-glass", Access::Admin, OK)
        .json(|_| json!({"break_glass": true})),
    // No directory is configured: the admin's sync is refused as not found.
    rule("GET", "/api/v1/admin/directory/sync", Access::Admin, OK),
    rule("POST", "/api/v1/admin/directory/sync", Access::Admin, &[404]).json(|_| json!({"dry_run": true})),
    rule("GET", "/api/v1/admin/identity/local-login", Access::Admin, OK),
    rule("PUT", "/api/v1/admin/identity/local-login", Access::Admin, OK)
        .json(|_| json!({"enabled_for_everyone": true})),
    rule("GET", "/api/v1/admin/policy", Access::Admin, OK),
    rule("PUT", "/api/v1/admin/policy", Access::Admin, OK)
        .json(|f| serde_json::from_str(f.get("org_policy")).unwrap()),
    rule("GET", "/api/v1/admin/security-groups", Access::Admin, OK),
    rule("POST", "/api/v1/admin/security-groups", Access::Admin, CREATED)
        .json(|_| json!({"name": "matrix created group", "precedence": 50})),
    rule("GET", "/api/v1/admin/security-groups/{group_id}", Access::Admin, OK),
    rule("PATCH", "/api/v1/admin/security-groups/{group_id}", Access::Admin, OK)
        .json(|_| json!({"precedence": 60})),
    rule("DELETE", "/api/v1/admin/security-groups/{group_id}", Access::Admin, &[200, 204]),
    rule("PUT", "/api/v1/admin/security-groups/{group_id}/members/{user_id}", Access::Admin, &[200, 204]),
    rule("DELETE", "/api/v1/admin/security-groups/{group_id}/members/{user_id}", Access::Admin, &[200, 204])
        .prepare(|w, f| {
            let path = f.fill("/api/v1/admin/security-groups/{group_id}/members/{user_id}");
            w.setup(Actor::Admin, "PUT", &path, None);
        }),
    rule("PUT", "/api/v1/admin/security-groups/{group_id}/policy", Access::Admin, OK).json(|_| json!({})),
    // Auditors: the audit log.
    rule("GET", "/api/v1/audit/events", Access::Auditor, OK),
    rule("GET", "/api/v1/audit/export", Access::Auditor, OK).query("format=jsonl"),
    rule("GET", "/api/v1/audit/verification", Access::Auditor, OK),
    // Compliance officers: retention, holds, exports (admins and auditors get 403:
    // separation of duties).
    rule("GET", "/api/v1/compliance/retention-policies", Access::Compliance, OK),
    rule("POST", "/api/v1/compliance/retention-policies/preview", Access::Compliance, OK)
        .json(|_| json!({"scope": "org", "max_days": 3650})),
    rule("PUT", "/api/v1/compliance/retention-policies/{scope}", Access::Compliance, OK)
        .json(|_| json!({"max_days": 3650})),
    rule("DELETE", "/api/v1/compliance/retention-policies/{scope}", Access::Compliance, &[200, 204])
        .prepare(|w, f| {
            let path = f.fill("/api/v1/compliance/retention-policies/{scope}");
            w.setup(Actor::Compliance, "PUT", &path, Some(json!({"max_days": 3650})));
        }),
    rule("GET", "/api/v1/compliance/retention-jobs", Access::Compliance, OK),
    rule("GET", "/api/v1/compliance/sweeper", Access::Compliance, OK),
    rule("GET", "/api/v1/compliance/legal-holds", Access::Compliance, OK),
    rule("POST", "/api/v1/compliance/legal-holds", Access::Compliance, CREATED)
        .json(|f| json!({"name": "matrix hold", "reason": "matrix", "rooms": [f.get("room_id")]})),
    rule("GET", "/api/v1/compliance/legal-holds/{hold_id}", Access::Compliance, OK),
    rule("PUT", "/api/v1/compliance/legal-holds/{hold_id}", Access::Compliance, OK)
        .json(|f| json!({"name": "matrix hold", "reason": "changed", "rooms": [f.get("room_id")]})),
    rule("POST", "/api/v1/compliance/legal-holds/{hold_id}/release", Access::Compliance, OK),
    rule("GET", "/api/v1/compliance/exports", Access::Compliance, OK),
    rule("POST", "/api/v1/compliance/exports", Access::Compliance, CREATED)
        .json(|f| json!({"format": "jsonl", "from": "2020-01-01T00:00:00Z", "until": f.get("past")})),
    rule("GET", "/api/v1/compliance/exports/{export_id}", Access::Compliance, OK),
    rule("GET", "/api/v1/compliance/exports/{export_id}/files/{path}", Access::Compliance, OK),
];

const SIGNIN_PASSWORD: &str = "the sign-in account's passphrase";

/// Registered by `SwaggerUi` (crates/server/src/openapi.rs) rather than `web::resource`.
const REGISTERED_ELSEWHERE: &[(&str, &str)] =
    &[("GET", "/api/v1/openapi.json"), ("GET", "/api/v1/docs/")];

/// Placeholder values: path parameters and the ids bodies refer to.
#[derive(Clone, Default)]
struct Fixture(BTreeMap<&'static str, String>);

impl Fixture {
    fn get(&self, key: &str) -> &str {
        self.0
            .get(key)
            .unwrap_or_else(|| panic!("no fixture value for {{{key}}}"))
    }

    fn fill(&self, template: &str) -> String {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').expect("closed placeholder") + start;
            out.push_str(self.get(&rest[start + 1..end]));
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }
}

struct Account {
    id: String,
    username: String,
    password: String,
    token: String,
}

/// The callers and the objects every call can refer to.
struct World<'a> {
    server: &'a Server,
    client: Client,
    accounts: BTreeMap<Actor, Account>,
    target: Account,
    spare_id: String,
    base: Fixture,
}

impl<'a> World<'a> {
    fn new(server: &'a Server) -> Self {
        let admin_token = server.admin_token();
        let me: Value = server.get("/api/v1/me", Some(&admin_token)).json().unwrap();
        let mut accounts = BTreeMap::new();
        accounts.insert(
            Actor::Admin,
            Account {
                id: me["id"].as_str().unwrap().to_owned(),
                username: "admin".into(),
                password: ADMIN_PASSWORD.into(),
                token: admin_token.clone(),
            },
        );
        let make = |username: &str, roles: &[&str]| {
            let (id, token) = server.user_with_roles(&admin_token, username, roles);
            Account {
                id,
                username: username.into(),
                password: format!("{username}'s own passphrase"),
                token,
            }
        };
        for (actor, username, roles) in [
            (Actor::Outsider, "outsider", &[][..]),
            (Actor::Member, "member", &[]),
            (Actor::Moderator, "moderator", &[]),
            (Actor::Owner, "owner", &[]),
            (Actor::Compliance, "compliance", &["compliance_officer"]),
            (Actor::Auditor, "auditor", &["auditor"]),
        ] {
            accounts.insert(actor, make(username, roles));
        }
        let target = make("target", &[]);
        let spare_id = make("spare", &[]).id;
        let signin = server.send(
            "POST",
            "/api/v1/admin/users",
            Some(&admin_token),
            Some(json!({"username": "signin", "display_name": "Sign-in", "password": SIGNIN_PASSWORD})),
        );
        assert_eq!(signin.status(), 201);
        // An account that has not replaced its one-time password.
        let created: Value = server
            .send(
                "POST",
                "/api/v1/admin/users",
                Some(&admin_token),
                Some(json!({"username": "unconfirmed", "display_name": "Unconfirmed"})),
            )
            .json()
            .unwrap();
        let one_time = created["one_time_password"].as_str().unwrap().to_owned();
        let (token, body) = server.login("unconfirmed", &one_time);
        assert_eq!(body["password_change_required"], true);
        accounts.insert(
            Actor::Unconfirmed,
            Account {
                id: created["user"]["id"].as_str().unwrap().to_owned(),
                username: "unconfirmed".into(),
                password: one_time,
                token,
            },
        );
        let client = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut world = Self {
            server,
            client,
            accounts,
            target,
            spare_id,
            base: Fixture::default(),
        };
        world.base = world.make_fixture();
        world.add_export();
        world
    }

    fn token(&self, actor: Actor) -> &str {
        &self.accounts[&actor].token
    }

    /// A call that must succeed during setup.
    fn setup(&self, actor: Actor, method: &str, path: &str, body: Option<Value>) -> Value {
        let response = self
            .server
            .send(method, path, Some(self.token(actor)), body);
        let status = response.status();
        let text = response.text().unwrap();
        assert!(
            status.is_success(),
            "setup {method} {path}: {status} {text}"
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Fresh rooms, message, attachment, group and hold, and the fixed values.
    fn make_fixture(&self) -> Fixture {
        let mut f = Fixture::default();
        // The target may have been suspended by the call before: bring it back (an active
        // account answers 409 or 200; either is fine here).
        self.server.send(
            "POST",
            &format!("/api/v1/admin/users/{}/reactivate", self.target.id),
            Some(self.token(Actor::Admin)),
            None,
        );
        let member = &self.accounts[&Actor::Member];
        let moderator = &self.accounts[&Actor::Moderator];
        let room = self.setup(
            Actor::Owner,
            "POST",
            "/api/v1/rooms",
            Some(
                json!({"name": "matrix", "member_ids": [member.id, moderator.id, self.target.id]}),
            ),
        );
        let room_id = room["room"]["id"].as_str().unwrap().to_owned();
        self.setup(
            Actor::Owner,
            "PUT",
            &format!("/api/v1/rooms/{room_id}/members/{}", moderator.id),
            Some(json!({"role": "moderator"})),
        );
        let upload = self
            .client
            .post(format!(
                "{}/api/v1/rooms/{room_id}/attachments?name=fixture.txt",
                self.server.url
            ))
            .bearer_auth(&member.token)
            .header("content-type", "text/plain")
            .body("fixture file")
            .send()
            .unwrap();
        assert_eq!(upload.status(), 201, "fixture upload");
        let attachment: Value = upload.json().unwrap();
        let attachment_id = attachment["id"].as_str().unwrap().to_owned();
        let message = self.setup(
            Actor::Member,
            "POST",
            &format!("/api/v1/rooms/{room_id}/messages"),
            Some(
                json!({"text": "fixture", "idempotency_key": uuid::Uuid::new_v4().to_string(),
                "attachment_id": attachment_id}),
            ),
        );
        let group = self.setup(
            Actor::Admin,
            "POST",
            "/api/v1/admin/security-groups",
            Some(json!({"name": format!("matrix {}", uuid::Uuid::new_v4()), "precedence": 10})),
        );
        let group_id = group["id"]
            .as_str()
            .or_else(|| group["group"]["id"].as_str())
            .unwrap_or_else(|| panic!("a group id in {group}"))
            .to_owned();
        let hold = self.setup(
            Actor::Compliance,
            "POST",
            "/api/v1/compliance/legal-holds",
            Some(json!({"name": "fixture hold", "reason": "matrix", "rooms": [room_id]})),
        );
        let hold_id = hold["id"]
            .as_str()
            .or_else(|| hold["hold"]["id"].as_str())
            .unwrap_or_else(|| panic!("a hold id in {hold}"))
            .to_owned();
        let org_policy = self.setup(Actor::Admin, "GET", "/api/v1/admin/policy", None);
        let message_view = if message["message"].is_object() {
            &message["message"]
        } else {
            &message
        };
        f.0.insert("room_id", room_id.clone());
        f.0.insert(
            "message_id",
            message_view["id"].as_str().unwrap().to_owned(),
        );
        f.0.insert(
            "past",
            message_view["created_at"].as_str().unwrap().to_owned(),
        );
        f.0.insert("attachment_id", attachment_id);
        f.0.insert("user_id", self.target.id.clone());
        f.0.insert("spare_id", self.spare_id.clone());
        f.0.insert("group_id", group_id);
        f.0.insert("hold_id", hold_id);
        f.0.insert("scope", format!("room:{room_id}"));
        f.0.insert("org_policy", org_policy_body(&org_policy).to_string());
        f.0.insert("emoji", "%F0%9F%91%8D".into());
        f.0.insert("provider", "nowhere".into());
        f.0.insert("name", "app.js".into());
        f.0.insert("path", "manifest.json".into());
        if let Some(export) = self.base.0.get("export_id") {
            f.0.insert("export_id", export.clone());
        }
        // Replaced per call for the rules that use a session of their own.
        f.0.insert("session_id", String::new());
        f
    }

    /// A finished compliance export by the compliance officer, for its routes.
    fn add_export(&mut self) {
        let body = json!({"format": "jsonl", "from": "2020-01-01T00:00:00Z",
            "until": self.base.get("past")});
        let started = self.setup(
            Actor::Compliance,
            "POST",
            "/api/v1/compliance/exports",
            Some(body),
        );
        let job = if started["job"].is_object() {
            &started["job"]
        } else {
            &started
        };
        let id = job["id"].as_str().unwrap().to_owned();
        for _ in 0..300 {
            let now = self.setup(
                Actor::Compliance,
                "GET",
                &format!("/api/v1/compliance/exports/{id}"),
                None,
            );
            let status = now["status"]
                .as_str()
                .or_else(|| now["job"]["status"].as_str())
                .unwrap_or_default()
                .to_owned();
            if status == "done" {
                self.base.0.insert("export_id", id);
                return;
            }
            assert_ne!(status, "failed", "the fixture export failed: {now}");
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the fixture export did not finish within 30 s");
    }

    /// A new session of `actor` and its id.
    fn own_session(&self, actor: Actor) -> (String, String) {
        let account = &self.accounts[&actor];
        let (token, _) = self.server.login(&account.username, &account.password);
        let sessions: Value = self
            .server
            .get("/api/v1/me/sessions", Some(&token))
            .json()
            .unwrap();
        let id = sessions["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["current"] == true)
            .and_then(|s| s["id"].as_str())
            .unwrap()
            .to_owned();
        (token, id)
    }

    /// Makes one call; returns the status and the error code if the body has one.
    fn call(&self, rule: &Rule, fixture: &Fixture, token: Option<&str>) -> (u16, Option<String>) {
        let mut url = format!("{}{}", self.server.url, fixture.fill(rule.path));
        if !rule.query.is_empty() {
            url.push('?');
            url.push_str(&fixture.fill(rule.query));
        }
        let method = reqwest::Method::from_bytes(rule.method.as_bytes()).unwrap();
        let mut request = self.client.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request = match rule.body {
            Body::None => request,
            Body::Json(make) => request.json(&make(fixture)),
            Body::Raw(content_type, bytes) => {
                request.header("content-type", content_type).body(bytes)
            }
            Body::Upgrade => request
                .header("connection", "Upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        };
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        if status == 101 {
            return (status, None);
        }
        let code = response
            .json::<Value>()
            .ok()
            .and_then(|body| body["error"]["code"].as_str().map(str::to_owned));
        (status, code)
    }
}

/// The org policy as `PUT /api/v1/admin/policy` takes it (the GET may wrap it).
fn org_policy_body(view: &Value) -> Value {
    view.get("policy").cloned().unwrap_or_else(|| view.clone())
}

/// Every (METHOD, path) the served OpenAPI document describes.
fn documented_routes(server: &Server) -> BTreeSet<(String, String)> {
    let doc: Value = server.get("/api/v1/openapi.json", None).json().unwrap();
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ] {
            if item.get(method).is_some() {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

/// Every (METHOD, path) registered with `web::resource(..).route(web::<method>()...)` in
/// the crates' sources (outside tests), with actix's `{name:regex}` written `{name}`.
/// Fails on a registration style it does not read, so it cannot silently miss routes.
fn registered_routes() -> BTreeSet<(String, String)> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(&crates)
        .unwrap()
        .map(|e| e.unwrap().path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut routes = BTreeSet::new();
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        let source = source.split("#[cfg(test)]").next().unwrap();
        for unread in [
            "web::scope(",
            ".route(\"",
            "#[get(",
            "#[post(",
            "#[put(",
            "#[patch(",
            "#[delete(",
            "#[route(",
        ] {
            assert!(
                !source.contains(unread),
                "{}: `{unread}` registers routes in a way the matrix's route scan does not read; extend registered_routes()",
                file.display()
            );
        }
        let chunks = source.split("web::resource(").skip(1);
        for chunk in chunks {
            let literal = chunk.trim_start().strip_prefix('"').unwrap_or_else(|| {
                panic!("{}: web::resource without a literal path", file.display())
            });
            let path = normalize(&literal[..literal.find('"').unwrap()]);
            // The resource's routes run until the end of its registration: the next
            // resource, or the end of the function.
            let body = chunk.split("\n}").next().unwrap();
            let mut found = false;
            for method in ["get", "post", "put", "patch", "delete", "head"] {
                if body.contains(&format!("web::{method}()")) {
                    routes.insert((method.to_uppercase(), path.clone()));
                    found = true;
                }
            }
            assert!(found, "{}: no method for {path}", file.display());
        }
    }
    routes
}

/// `{path:.+}` -> `{path}`; the Swagger UI's `{_:.*}` tail -> nothing.
fn normalize(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').unwrap() + start;
        let name = rest[start + 1..end].split(':').next().unwrap();
        out.push_str(&rest[..start]);
        if name != "_" {
            out.push_str(&format!("{{{name}}}"));
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn every_endpoint_answers_every_caller_as_the_role_rules_say(backend: TestBackend) {
    let server = Server::start(backend);

    // The table covers the route table exactly.
    let table: BTreeSet<(String, String)> = RULES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(table.len(), RULES.len(), "a route has two rules");
    let documented = documented_routes(&server);
    let registered = registered_routes();
    let elsewhere: BTreeSet<(String, String)> = REGISTERED_ELSEWHERE
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    let without_rule: Vec<_> = documented
        .union(&registered)
        .filter(|route| !table.contains(*route))
        .collect();
    assert!(
        without_rule.is_empty(),
        "routes without an authorization rule (add them to RULES): {without_rule:?}"
    );
    let stale: Vec<_> = table
        .iter()
        .filter(|route| {
            !documented.contains(*route)
                && !registered.contains(*route)
                && !elsewhere.contains(*route)
        })
        .collect();
    assert!(
        stale.is_empty(),
        "rules for routes that do not exist: {stale:?}"
    );
    let undocumented: Vec<_> = registered
        .difference(&documented)
        .filter(|(_, path)| path.starts_with("/api/"))
        .collect();
    assert!(
        undocumented.is_empty(),
        "API routes missing from the OpenAPI document: {undocumented:?}"
    );
    let unregistered: Vec<_> = documented.difference(&registered).collect();
    assert!(
        unregistered.is_empty(),
        "documented routes the source scan did not find registered: {unregistered:?}"
    );
    for rule in RULES {
        if rule.access != Access::Public {
            assert!(
                !rule.ok.iter().any(|s| [401, 403].contains(s)),
                "{} {}: an allowed caller never gets 401 or 403",
                rule.method,
                rule.path
            );
        }
    }

    let world = World::new(&server);
    let mut failures = Vec::new();
    let mut calls = 0;
    let mut fixtures = 1;
    let mut fixture = world.base.clone();
    for rule in RULES {
        let mut public_answer: Option<u16> = None;
        for actor in ACTORS {
            let own;
            let token = match actor {
                Actor::Anonymous => None,
                _ if rule.own_session => {
                    own = world.own_session(actor);
                    fixture.0.insert("session_id", own.1.clone());
                    Some(own.0.as_str())
                }
                _ => Some(world.token(actor)),
            };
            if actor == Actor::Anonymous && rule.own_session {
                // Somebody's real session id: still 401 without a session.
                let (_, id) = world.own_session(Actor::Outsider);
                fixture.0.insert("session_id", id);
            }
            (rule.prepare)(&world, &fixture);
            let (status, code) = world.call(rule, &fixture, token);
            calls += 1;
            let expect = expected(rule.access, actor);
            let wrong = match expect {
                Expect::Allowed => !rule.ok.contains(&status),
                Expect::Unauthenticated => {
                    status != 401 || code.as_deref() != Some("unauthenticated")
                }
                Expect::Forbidden(want) => status != 403 || code.as_deref() != Some(want),
                Expect::Hidden => status != 404 || code.as_deref() != Some("not_found"),
            };
            if wrong {
                failures.push(format!(
                    "{} {} as {actor:?}: got {status} {code:?}, expected {expect:?} {:?}",
                    rule.method,
                    rule.path,
                    if expect == Expect::Allowed {
                        rule.ok
                    } else {
                        &[]
                    },
                ));
            }
            if rule.access == Access::Public {
                match public_answer {
                    None => public_answer = Some(status),
                    Some(first) if first != status => failures.push(format!(
                        "{} {} as {actor:?}: {status}, but {first} for anonymous: a public endpoint answers everyone alike",
                        rule.method, rule.path
                    )),
                    Some(_) => {}
                }
            }
            // A write that succeeded may have changed what the next caller would see.
            if rule.method != "GET" && (200..300).contains(&status) {
                fixture = world.make_fixture();
                fixtures += 1;
            }
        }
    }
    eprintln!(
        "authorization matrix: {} routes x {} callers = {calls} calls, {fixtures} fixture sets, {} mismatches",
        RULES.len(),
        ACTORS.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "authorization mismatches:\n{}",
        failures.join("\n")
    );
    assert!(
        !server.stderr().contains("\"status\":500"),
        "no call ended in a 500"
    );
}
