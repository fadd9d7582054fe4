//! HTTP routes of the messaging service. Handlers parse input into domain types, call one
//! service function on a blocking thread, publish the committed events in the background,
//! and map the result.

use crate::attachments::{self, Upload};
use crate::messages::{self, NewMessageInput};
use crate::realtime::{self, Published, ws};
use crate::rooms;
use crate::settings::MessagingState;
use crate::wire::*;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use conclave_api::{ApiError, ErrorBody};
use conclave_auth::AuthUser;
use conclave_core::{
    AttachmentId, Emoji, IdempotencyKey, MemberRole, MessageId, MessageText, RoomId, RoomName,
    Topic, UserId,
};
use conclave_store::messages::Page;
use std::sync::Arc;
use utoipa::OpenApi;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/v1/ws").route(web::get().to(ws::websocket)))
        .service(
            web::resource("/api/v1/rooms")
                .route(web::get().to(list_rooms))
                .route(web::post().to(create_room)),
        )
        .service(web::resource("/api/v1/direct").route(web::post().to(open_direct)))
        .service(
            web::resource("/api/v1/rooms/{room_id}")
                .route(web::get().to(get_room))
                .route(web::patch().to(update_room)),
        )
        .service(web::resource("/api/v1/rooms/{room_id}/members").route(web::post().to(add_member)))
        .service(
            web::resource("/api/v1/rooms/{room_id}/members/{user_id}")
                .route(web::put().to(set_member_role))
                .route(web::delete().to(remove_member)),
        )
        .service(web::resource("/api/v1/rooms/{room_id}/leave").route(web::post().to(leave_room)))
        .service(
            web::resource("/api/v1/rooms/{room_id}/policy")
                .route(web::get().to(get_room_policy))
                .route(web::put().to(put_room_policy)),
        )
        .service(
            web::resource("/api/v1/rooms/{room_id}/messages")
                .route(web::get().to(list_messages))
                .route(web::post().to(send_message)),
        )
        .service(
            web::resource("/api/v1/rooms/{room_id}/messages/{message_id}")
                .route(web::get().to(get_message))
                .route(web::patch().to(edit_message))
                .route(web::delete().to(delete_message)),
        )
        .service(
            web::resource("/api/v1/rooms/{room_id}/messages/{message_id}/reactions/{emoji}")
                .route(web::put().to(add_reaction))
                .route(web::delete().to(remove_reaction)),
        )
        .service(web::resource("/api/v1/rooms/{room_id}/read").route(web::post().to(mark_read)))
        .service(
            web::resource("/api/v1/rooms/{room_id}/attachments")
                .route(web::post().to(upload_attachment)),
        )
        .service(
            web::resource("/api/v1/rooms/{room_id}/attachments/{attachment_id}")
                .route(web::get().to(download_attachment)),
        );
}

#[derive(OpenApi)]
#[openapi(
    paths(
        ws::websocket, list_rooms, create_room, open_direct, get_room, update_room, add_member, set_member_role,
        remove_member, leave_room, get_room_policy, put_room_policy, list_messages, send_message, get_message, edit_message, delete_message,
        add_reaction, remove_reaction, mark_read, upload_attachment, download_attachment,
    ),
    components(schemas(
        RoomView, MemberView, RoomDetail, RoomList, AttachmentView, ReactionView, MessageView, MessageList,
        CreateRoomRequest, OpenDirectRequest, UpdateRoomRequest, AddMemberRequest, SetMemberRoleRequest,
        SendMessageRequest, EditMessageRequest, MarkReadRequest, ReadMarker, RoomPolicy,
    )),
    tags(
        (name = "rooms", description = "Rooms, direct conversations and membership. Non-members get 404 for a room and everything in it."),
        (name = "messages", description = "Messages, edits, deletes, reactions, read receipts"),
        (name = "attachments", description = "Encrypted file attachments"),
        (name = "realtime", description = "The WebSocket event stream"),
    )
)]
pub struct MessagingApi;

/// A message timer from the request: at least a second, at most 365 days.
fn timer(
    field: &'static str,
    seconds: Option<u64>,
) -> Result<Option<std::time::Duration>, ApiError> {
    match seconds {
        None => Ok(None),
        Some(seconds) if (1..=365 * 86_400).contains(&seconds) => {
            Ok(Some(std::time::Duration::from_secs(seconds)))
        }
        Some(_) => Err(conclave_core::ValidationError::new(
            field,
            "must be between 1 second and 365 days",
        )
        .into()),
    }
}

/// Publishes committed events without holding up the response.
fn spawn_publish(state: &web::Data<MessagingState>, published: Vec<Published>) {
    if published.is_empty() {
        return;
    }
    let state = state.get_ref().clone();
    actix_web::rt::spawn(async move { realtime::publish(&state, published).await });
}

/// List the caller's conversations, most recently active first.
#[utoipa::path(get, path = "/api/v1/rooms", tag = "rooms", security(("bearer" = [])),
    responses((status = 200, body = RoomList), (status = 401, description = "No valid session", body = ErrorBody)))]
async fn list_rooms(
    state: web::Data<MessagingState>,
    user: AuthUser,
) -> Result<web::Json<RoomList>, ApiError> {
    let me = user.user.id;
    let rooms = state
        .auth
        .db
        .run(move |conn| rooms::list_mine(conn, me))
        .await?;
    Ok(web::Json(RoomList { rooms }))
}

/// Create a room; the caller becomes its owner.
#[utoipa::path(post, path = "/api/v1/rooms", tag = "rooms", security(("bearer" = [])), request_body = CreateRoomRequest,
    responses((status = 201, body = RoomDetail), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 422, description = "Invalid name, topic or member, or more members than a room holds", body = ErrorBody)))]
async fn create_room(
    state: web::Data<MessagingState>,
    user: AuthUser,
    body: conclave_api::extract::Json<CreateRoomRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let name = RoomName::parse(&body.name)?;
    let topic = Topic::parse(body.topic.as_deref().unwrap_or(""))?;
    let (me, now, limits) = (
        user.user.id,
        state.auth.clock.now(),
        state.settings.room_limits(),
    );
    let (detail, published) = state
        .auth
        .db
        .run(move |conn| rooms::create_room(conn, now, me, name, topic, body.member_ids, limits))
        .await?;
    spawn_publish(&state, published);
    Ok(HttpResponse::Created().json(detail))
}

/// Open the direct conversation with a user (the same one every time).
#[utoipa::path(post, path = "/api/v1/direct", tag = "rooms", security(("bearer" = [])), request_body = OpenDirectRequest,
    responses((status = 200, body = RoomDetail), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 422, description = "No such active user, or yourself", body = ErrorBody)))]
async fn open_direct(
    state: web::Data<MessagingState>,
    user: AuthUser,
    body: conclave_api::extract::Json<OpenDirectRequest>,
) -> Result<web::Json<RoomDetail>, ApiError> {
    let (me, other, now) = (user.user.id, body.user_id, state.auth.clock.now());
    let max_rooms = state.settings.max_rooms_per_user;
    let (detail, published) = state
        .auth
        .db
        .run(move |conn| rooms::open_direct(conn, now, me, other, max_rooms))
        .await?;
    spawn_publish(&state, published);
    Ok(web::Json(detail))
}

/// A conversation with its members.
#[utoipa::path(get, path = "/api/v1/rooms/{room_id}", tag = "rooms", security(("bearer" = [])), params(("room_id" = RoomId, Path)),
    responses((status = 200, body = RoomDetail), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 404, description = "No such room, or not a member", body = ErrorBody)))]
async fn get_room(
    state: web::Data<MessagingState>,
    user: AuthUser,
    path: web::Path<RoomId>,
) -> Result<web::Json<RoomDetail>, ApiError> {
    let (me, room_id) = (user.user.id, path.into_inner());
    Ok(web::Json(
        state
            .auth
            .db
            .run(move |conn| rooms::room_detail(conn, room_id, me))
            .await?,
    ))
}

/// Rename a room or set its topic (moderators and owners).
#[utoipa::path(patch, path = "/api/v1/rooms/{room_id}", tag = "rooms", security(("bearer" = [])), params(("room_id" = RoomId, Path)),
    request_body = UpdateRoomRequest,
    responses((status = 200, body = RoomDetail), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not a moderator or owner", body = ErrorBody), (status = 404, description = "No such room, or not a member", body = ErrorBody),
        (status = 409, description = "A direct conversation", body = ErrorBody)))]
async fn update_room(
    state: web::Data<MessagingState>,
    user: AuthUser,
    path: web::Path<RoomId>,
    body: conclave_api::extract::Json<UpdateRoomRequest>,
) -> Result<web::Json<RoomDetail>, ApiError> {
    let body = body.into_inner();
    let name = body.name.as_deref().map(RoomName::parse).transpose()?;
    let topic = body.topic.as_deref().map(Topic::parse).transpose()?;
    let (me, room_id, now) = (user.user.id, path.into_inner(), state.auth.clock.now());
    let (detail, published) = state
        .auth
        .db
        .run(move |conn| rooms::update_room(conn, now, me, room_id, name, topic))
        .await?;
    spawn_publish(&state, published);
    Ok(web::Json(detail))
}

/// Add a member (moderators add members; owners any role).
#[utoipa::path(post, path = "/api/v1/rooms/{room_id}/members", tag = "rooms", security(("bearer" = [])), params(("room_id" = RoomId, Path)),
    request_body = AddMemberRequest,
    responses((status = 204, description = "Added"), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Role may not add members or that role", body = ErrorBody), (status = 404, description = "No such room, or not a member", body = ErrorBody),
        (status = 409, description = "Already a member, or a direct conversation", body = ErrorBody), (status = 422, description = "No such user, or the room is full", body = ErrorBody)))]
async fn add_member(
    state: web::Data<MessagingState>,
    user: AuthUser,
    path: web::Path<RoomId>,
    body: conclave_api::extract::Json<AddMemberRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let (me, room_id, now, max) = (
        user.user.id,
        path.into_inner(),
        state.auth.clock.now(),
        state.settings.room_limits(),
    );
    let role = body.role.unwrap_or(MemberRole::Member);
    let published = state
        .auth
        .db
        .run(move |conn| rooms::add_member(conn, now, me, room_id, body.user_id, role, max))
        .await?;
    spawn_publish(&state, published);
    Ok(HttpResponse::NoContent().finish())
}

/// Change a member's role (owners).
#[utoipa::path(put, path = "/api/v1/rooms/{room_id}/members/{user_id}", tag = "rooms", security(("bearer" = [])),
    params(("room_id" = RoomId, Path), ("user_id" = UserId, Path)), request_body = SetMemberRoleRequest,
    responses((status = 204, description = "Changed"), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not an owner", body = ErrorBody), (status = 404, description = "No such room or member", body = ErrorBody),
        (status = 409, description = "The last owner cannot step down", body = ErrorBody)))]
async fn set_member_role(
    state: web::Data<MessagingState>,
    user: AuthUser,
    path: web::Path<(RoomId, UserId)>,
    body: conclave_api::extract::Json<SetMemberRoleRequest>,
) -> Result<HttpResponse, ApiError> {
    let (room_id, target) = path.into_inner();
    let (me, now, role) = (user.user.id, state.auth.clock.now(), body.role);
    let published = state
        .auth
        .db
        .run(move |conn| rooms::set_member_role(conn, now, me, room_id, target, role))
        .await?;
    spawn_publish(&state, published);
    Ok(HttpResponse::NoContent().finish())
}

/// Remove a member (moderators remove members; owners anyone). Removing yourself leaves.
#[utoipa::path(delete, path = "/api/v1/rooms/{room_id}/members/{user_id}", tag = "rooms", security(("bearer" = [])),
    params(("room_id" = RoomId, Path), ("user_id" = UserId, Path)),
    responses((status = 204, description = "Removed"), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Role may not remove that member", body = ErrorBody), (status = 404, description = "No such room or member", body = ErrorBody),
        (status = 409, description = "Removing oneself is leaving: the last owner cannot leave while others remain", body = ErrorBody)))]
async fn remove_member(
    state: web::Data<MessagingState>,
    user: AuthUser,
    path: web::Path<(RoomId, UserId)>,
) -> Result<HttpResponse, ApiError> {
    let (room_id, target) = path.into_inner();
    let (me, now) = (user.user.id, state.auth.clock.now());
    let published = state
        .auth
        .db
        .run(move |conn| rooms::remove_member(conn, now, me, room_id, target))
        .await?;
    spawn_publish(&state, published);
    Ok(HttpResponse::NoContent().finish())
}

/// Leave a room.
#[utoipa::path(post, path = "/api/v1/rooms/{room_id}/leave", tag = "rooms", security(("bearer" = [])), params(("room_id" = RoomId, Path)),
    responses((status = 204, description = "Left"), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 404, description = "No such room, or not a member", body = ErrorBody),
        (status = 409, description = "The last owner, or a direct conversation", body = ErrorBody)))]
async fn leave_room(
    state: web::Data<MessagingState>,
    user: AuthUser,
    path: web::Path<RoomId>,
) -> Result<HttpResponse, ApiError> {
    let (me, room_id, now) = (user.user.id, path.into_inner(), state.auth.clock.now());
    let published = state
        .auth
        .db
        .run(move |conn| rooms::leave(conn, now, me, room_id))
        .await?;
    spawn_publish(&state, published);
    Ok(HttpResponse::NoContent().finish())
}

/// A page of messages, oldest first: the newest by default, `before` to page back,
/// `after` to catch up.
#[utoipa::path(get, path = "/api/v1/rooms/{room_id}/messages", tag = "messages", security(("bearer" = [])),
    params(("room_id" = RoomId, Path), ListMessagesQuery),
    responses((status = 200, body = MessageList), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 404, description = "No such room, or not a member", body = ErrorBody), (status = 422, description = "Both before and after", body = ErrorBody)))]
async fn list_messages(
    state: web::Data<MessagingState>,
    user: AuthUser,
    path: web::Path<RoomId>,
    query: web::Query<ListMessagesQuery>,
) -> Result<web::Json<MessageList>, ApiError> {
    let query = query.into_inner();
    let page = match (query.before, query.after) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                conclave_core::ErrorCode::InvalidInput,
                "give before or after, not both",
            ));
        }
        (before, None) => Page::Before(before),
        (None, Some(after)) => Page::After(after),
    };
    let (me, room_id, keyring) = (user.user.id, path.into_inner(), Arc::clone(&state.keyring));
    let limit = query.limit.unwrap_or(50);
    let now = state.auth.clock.now();
    let messages = state
        .auth
        .db
        .run(move |conn| messages::list(conn, &keyring, now, me, room_id, page, limit))
        .await?;
    Ok(web::Json(MessageList { messages }))
}

/// Send a message. A retry with the same idempotency key returns the original (200).
#[utoipa::path(post, path = "/api/v1/rooms/{room_id}/messages", tag = "messages", security(("bearer" = [])),
    params(("room_id" = RoomId, Path)), request_body = SendMessageRequest,
    responses((status = 201, description = "Sent", body = MessageView), (status = 200, description = "A retry: the original message", body = MessageView),
        (status = 401, description = "No valid session", body = ErrorBody), (status = 404, description = "No such room, or not a member", body = ErrorBody),
        (status = 422, description = "Empty or oversize text, bad idempotency key, reply or attachment from elsewhere", body = ErrorBody),
        (status = 429, description = "Over `messaging.max_sends_per_minute`; `Retry-After` says when to retry", body = ErrorBody)))]
async fn send_message(
    state: web::Data<MessagingState>,
    user: AuthUser,
    path: web::Path<RoomId>,
    body: conclave_api::extract::Json<SendMessageRequest>,
) -> Result<HttpResponse, ApiError> {
    messages::check_send_rate(&state.send_limiter, user.user.id, state.auth.clock.now())?;
    let body = body.into_inner();
    let input = NewMessageInput {
        text: MessageText::parse(&body.text, state.settings.max_message_bytes)?,
        idempotency_key: IdempotencyKey::parse(&body.idempotency_key)?,
        reply_to_id: body.reply_to_id,
        attachment_id: body.attachment_id,
        expires_in: timer("expires_in_seconds", body.expires_in_seconds)?,
        burn_after_read: timer("burn_after_read_seconds", body.burn_after_read_seconds)?,
    };
    let request = messages::SendRequest {
        sender: user.user.id,
        room_id: path.into_inner(),
        now: state.auth.clock.now(),
        input,
    };
    // Stored together with the sends queued beside it; announced to the other nodes by
    // the queue (see `send_queue`).
    let sent = state.sends.send(request).await?;
    // The send rendered its own event: delivered here without another database trip.
    realtime::deliver_rendered(&state, &sent.published);
    if sent.created {
        conclave_metrics::message_sent();
    }
    let mut response = if sent.created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(response.json(sent.message))
}

/// One message.
#[utoipa::path(get, path = "/api/v1/rooms/{room_id}/messages/{message_id}", tag = "messages", security(("bearer" = [])),
    params(("room_id" = RoomId, Path), ("message_id" = MessageId, Path)),
    responses((status = 200, body = MessageView), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 404, description = "No such message here, or not a member", body = ErrorBody)))]
async fn get_message(
    state: web::Data<MessagingState>,
    user: AuthUser,
    path: web::Path<(RoomId, MessageId)>,
) -> Result<web::Json<MessageView>, ApiError> {
    let (room_id, message_id) = path.into_inner();
    let (me, keyring, now) = (
        user.user.id,
        Arc::clone(&state.keyring),
        state.auth.clock.now(),
    );
    Ok(web::Json(
        state
            .auth
            .db
            .run(move |conn| messages::get(conn, &keyring, now, me, room_id, message_id))
            .await?,
    ))
}

/// Edit a message (the sender); earlier versions are kept for compliance.
#[utoipa::path(patch, path = "/api/v1/rooms/{room_id}/messages/{message_id}", tag = "messages", security(("bearer" = [])),
    params(("room_id" = RoomId, Path), ("message_id" = MessageId, Path)), request_body = EditMessageRequest,
    responses((status = 200, body = MessageView), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not the sender", body = ErrorBody), (status = 404, description = "No such message, deleted, or not a member", body = ErrorBody),
        (status = 422, description = "Empty or oversize text", body = ErrorBody)))]
async fn edit_message(
    state: web::Data<MessagingState>,
    user: AuthUser,
    path: web::Path<(RoomId, MessageId)>,
    body: conclave_api::extract::Json<EditMessageRequest>,
) -> Result<web::Json<MessageView>, ApiError> {
    let text = MessageText::parse(&body.text, state.settings.max_message_bytes)?;
    let (room_id, message_id) = path.into_inner();
    let (me, now, keyring) = (
        user.user.id,
        state.auth.clock.now(),
        Arc::clone(&state.keyring),
    );
    let (view, published) = state
        .auth
        .db
        .run(move |conn| messages::edit(conn, &keyring, now, me, room_id, message_id, text))
        .await?;
    spawn_publish(&state, published);
    Ok(web::Json(view))
}

/// Delete a message for everyone (the sender, or a moderator or owner).
#[utoipa::path(delete, path = "/api/v1/rooms/{room_id}/messages/{message_id}", tag = "messages", security(("bearer" = [])),
    params(("room_id" = RoomId, Path), ("message_id" = MessageId, Path)),
    responses((status = 204, description = "Deleted"), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Neither the sender nor a moderator", body = ErrorBody), (status = 404, description = "No such message, or not a member", body = ErrorBody)))]
async fn delete_message(
    state: web::Data<MessagingState>,
    user: AuthUser,
    path: web::Path<(RoomId, MessageId)>,
) -> Result<HttpResponse, ApiError> {
    let (room_id, message_id) = path.into_inner();
    let (me, now) = (user.user.id, state.auth.clock.now());
    let published = state
        .auth
        .db
        .run(move |conn| messages::delete(conn, now, me, room_id, message_id))
        .await?;
    spawn_publish(&state, published);
    Ok(HttpResponse::NoContent().finish())
}

async fn react(
    state: web::Data<MessagingState>,
    user: AuthUser,
    path: web::Path<(RoomId, MessageId, String)>,
    present: bool,
) -> Result<HttpResponse, ApiError> {
    let (room_id, message_id, emoji) = path.into_inner();
    let emoji = Emoji::parse(&emoji)?;
    let (me, now) = (user.user.id, state.auth.clock.now());
    let published = state
        .auth
        .db
        .run(move |conn| messages::react(conn, now, me, room_id, message_id, emoji, present))
        .await?;
    spawn_publish(&state, published);
    Ok(HttpResponse::NoContent().finish())
}

/// React to a message (idempotent).
#[utoipa::path(put, path = "/api/v1/rooms/{room_id}/messages/{message_id}/reactions/{emoji}", tag = "messages", security(("bearer" = [])),
    params(("room_id" = RoomId, Path), ("message_id" = MessageId, Path), ("emoji" = String, Path, description = "URL-encoded emoji or short code")),
    responses((status = 204, description = "Reaction present"), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 404, description = "No such message, or not a member", body = ErrorBody), (status = 422, description = "Not an emoji", body = ErrorBody)))]
async fn add_reaction(
    state: web::Data<MessagingState>,
    user: AuthUser,
    path: web::Path<(RoomId, MessageId, String)>,
) -> Result<HttpResponse, ApiError> {
    react(state, user, path, true).await
}

/// Withdraw a reaction (idempotent).
#[utoipa::path(delete, path = "/api/v1/rooms/{room_id}/messages/{message_id}/reactions/{emoji}", tag = "messages", security(("bearer" = [])),
    params(("room_id" = RoomId, Path), ("message_id" = MessageId, Path), ("emoji" = String, Path)),
    responses((status = 204, description = "Reaction absent"), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 404, description = "No such message, or not a member", body = ErrorBody), (status = 422, description = "Not an emoji", body = ErrorBody)))]
async fn remove_reaction(
    state: web::Data<MessagingState>,
    user: AuthUser,
    path: web::Path<(RoomId, MessageId, String)>,
) -> Result<HttpResponse, ApiError> {
    react(state, user, path, false).await
}

/// Move the caller's read marker (read receipt) forward.
#[utoipa::path(post, path = "/api/v1/rooms/{room_id}/read", tag = "messages", security(("bearer" = [])),
    params(("room_id" = RoomId, Path)), request_body = MarkReadRequest,
    responses((status = 200, body = ReadMarker), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 404, description = "No such room, or not a member", body = ErrorBody), (status = 422, description = "Beyond the last message", body = ErrorBody)))]
async fn mark_read(
    state: web::Data<MessagingState>,
    user: AuthUser,
    path: web::Path<RoomId>,
    body: conclave_api::extract::Json<MarkReadRequest>,
) -> Result<web::Json<ReadMarker>, ApiError> {
    let (me, room_id, now, seq) = (
        user.user.id,
        path.into_inner(),
        state.auth.clock.now(),
        body.seq,
    );
    let (last_read_seq, published) = state
        .auth
        .db
        .run(move |conn| messages::mark_read(conn, now, me, room_id, seq))
        .await?;
    spawn_publish(&state, published);
    Ok(web::Json(ReadMarker { last_read_seq }))
}

/// Upload an attachment: the raw file as the body, its type as Content-Type. Reference the
/// returned id from a message.
#[utoipa::path(post, path = "/api/v1/rooms/{room_id}/attachments", tag = "attachments", security(("bearer" = [])),
    params(("room_id" = RoomId, Path), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file"),
    responses((status = 201, body = AttachmentView), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 404, description = "No such room, or not a member", body = ErrorBody), (status = 413, description = "Larger than allowed", body = ErrorBody),
        (status = 422, description = "Bad name", body = ErrorBody), (status = 503, description = "Storage full; nothing stored", body = ErrorBody)))]
async fn upload_attachment(
    state: web::Data<MessagingState>,
    user: AuthUser,
    req: HttpRequest,
    path: web::Path<RoomId>,
    query: web::Query<UploadQuery>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let name = attachments::parse_name(&query.name)?;
    let content_type = attachments::normalize_content_type(
        req.headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    let declared_len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let upload = Upload {
        room_id: path.into_inner(),
        uploader: user.user.id,
        name,
        content_type,
        declared_len,
    };
    let view = attachments::upload(&state, state.auth.clock.now(), upload, body).await?;
    Ok(HttpResponse::Created().json(view))
}

/// Download an attachment (room members), decrypted as it streams.
#[utoipa::path(get, path = "/api/v1/rooms/{room_id}/attachments/{attachment_id}", tag = "attachments", security(("bearer" = [])),
    params(("room_id" = RoomId, Path), ("attachment_id" = AttachmentId, Path)),
    responses((status = 200, description = "The file", content_type = "application/octet-stream"),
        (status = 401, description = "No valid session", body = ErrorBody), (status = 404, description = "No such attachment here, or not a member", body = ErrorBody)))]
async fn download_attachment(
    state: web::Data<MessagingState>,
    user: AuthUser,
    path: web::Path<(RoomId, AttachmentId)>,
) -> Result<HttpResponse, ApiError> {
    let (room_id, attachment_id) = path.into_inner();
    let download = attachments::download(&state, user.user.id, room_id, attachment_id).await?;
    let disposition = header::ContentDisposition {
        disposition: header::DispositionType::Attachment,
        parameters: vec![header::DispositionParam::FilenameExt(
            header::ExtendedValue {
                charset: header::Charset::Ext("UTF-8".into()),
                language_tag: None,
                value: download.record.name.clone().into_bytes(),
            },
        )],
    };
    Ok(HttpResponse::Ok()
        .content_type(download.record.content_type.clone())
        .insert_header(disposition)
        // The uploader chose the content type: should a browser render the file anyway,
        // it runs in a sandbox with no script and no access to this origin.
        .insert_header((
            actix_web::http::header::CONTENT_SECURITY_POLICY,
            "sandbox; default-src 'none'",
        ))
        .no_chunking(u64::try_from(download.record.size_bytes).unwrap_or(0))
        .streaming(download.body))
}

/// The room's policy overrides and what applies to the caller in it.
#[utoipa::path(get, path = "/api/v1/rooms/{room_id}/policy", tag = "rooms", security(("bearer" = [])), params(("room_id" = RoomId, Path)),
    responses((status = 200, body = RoomPolicy), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 404, description = "No such room, or not a member", body = ErrorBody)))]
async fn get_room_policy(
    state: web::Data<MessagingState>,
    user: AuthUser,
    path: web::Path<RoomId>,
) -> Result<web::Json<RoomPolicy>, ApiError> {
    let (me, room_id) = (user.user.id, path.into_inner());
    Ok(web::Json(
        state
            .auth
            .db
            .run(move |conn| rooms::policy(conn, me, room_id))
            .await?,
    ))
}

/// Set the room's policy overrides (owners; audited). They can only tighten the policy
/// above them; a looser value has no effect. Applies to messages sent from now on.
#[utoipa::path(put, path = "/api/v1/rooms/{room_id}/policy", tag = "rooms", security(("bearer" = [])), params(("room_id" = RoomId, Path)),
    request_body = conclave_core::PolicyOverrides,
    responses((status = 200, body = RoomPolicy), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not an owner", body = ErrorBody), (status = 404, description = "No such room, or not a member", body = ErrorBody),
        (status = 422, description = "A timer out of range", body = ErrorBody)))]
async fn put_room_policy(
    state: web::Data<MessagingState>,
    req: HttpRequest,
    user: AuthUser,
    path: web::Path<RoomId>,
    body: conclave_api::extract::Json<conclave_core::PolicyOverrides>,
) -> Result<web::Json<RoomPolicy>, ApiError> {
    let context = conclave_auth::extract::audit_context(&req, &user);
    let (me, room_id, now, overrides) = (
        user.user.id,
        path.into_inner(),
        state.auth.clock.now(),
        body.into_inner(),
    );
    Ok(web::Json(
        state
            .auth
            .db
            .run(move |conn| rooms::set_policy(conn, &context, now, me, room_id, overrides))
            .await?,
    ))
}
