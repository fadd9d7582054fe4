//! The diesel schema, identical for both backends (the migrations keep it so, and a test
//! compares them).

diesel::table! {
    users (id) {
        id -> Text,
        username -> Text,
        display_name -> Text,
        email -> Nullable<Text>,
        status -> Text,
        auth_source -> Text,
        password_hash -> Nullable<Text>,
        must_change_password -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
        break_glass -> Bool,
    }
}

diesel::table! {
    user_roles (user_id, role) {
        user_id -> Text,
        role -> Text,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        user_id -> Text,
        token_hash -> Binary,
        created_at -> BigInt,
        last_seen_at -> BigInt,
        expires_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        revoked_reason -> Nullable<Text>,
        client_addr -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        idle_timeout_seconds -> Nullable<BigInt>,
        auth_provider -> Nullable<Text>,
    }
}

diesel::table! {
    login_failures (id) {
        id -> Text,
        subject -> Text,
        failed_at -> BigInt,
    }
}

diesel::table! {
    audit_events (seq) {
        seq -> BigInt,
        id -> Text,
        occurred_at -> BigInt,
        actor_id -> Nullable<Text>,
        actor_name -> Text,
        action -> Text,
        target_kind -> Nullable<Text>,
        target_id -> Nullable<Text>,
        client_addr -> Nullable<Text>,
        api_path -> Nullable<Text>,
        outcome -> Text,
        details -> Text,
        prev_hash -> Binary,
        hash -> Binary,
    }
}

diesel::table! {
    rooms (id) {
        id -> Text,
        kind -> Text,
        name -> Nullable<Text>,
        topic -> Nullable<Text>,
        direct_key -> Nullable<Text>,
        created_by -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        last_message_seq -> BigInt,
        last_event_seq -> BigInt,
    }
}

diesel::table! {
    room_members (room_id, user_id) {
        room_id -> Text,
        user_id -> Text,
        role -> Text,
        joined_at -> BigInt,
        joined_after_event_seq -> BigInt,
        last_read_seq -> BigInt,
    }
}

diesel::table! {
    room_keys (room_id, epoch) {
        room_id -> Text,
        epoch -> BigInt,
        master_key_id -> Text,
        wrapped_key -> Binary,
        created_at -> BigInt,
    }
}

diesel::table! {
    attachments (id) {
        id -> Text,
        room_id -> Text,
        uploader_id -> Text,
        name -> Text,
        content_type -> Text,
        size_bytes -> BigInt,
        sha256 -> Text,
        epoch -> BigInt,
        storage_path -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    messages (id) {
        id -> Text,
        room_id -> Text,
        seq -> BigInt,
        sender_id -> Text,
        reply_to_id -> Nullable<Text>,
        attachment_id -> Nullable<Text>,
        current_version -> BigInt,
        idempotency_key -> Text,
        created_at -> BigInt,
        edited_at -> Nullable<BigInt>,
        deleted_at -> Nullable<BigInt>,
        deleted_by -> Nullable<Text>,
        visible_until -> Nullable<BigInt>,
        burn_after_read_seconds -> Nullable<BigInt>,
        expiry_announced_at -> Nullable<BigInt>,
        retain_until -> Nullable<BigInt>,
    }
}

diesel::table! {
    message_reads (message_id, user_id) {
        message_id -> Text,
        user_id -> Text,
        first_read_at -> Nullable<BigInt>,
        visible_until -> Nullable<BigInt>,
        announced_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    policies (scope) {
        scope -> Text,
        policy -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    message_versions (message_id, version) {
        message_id -> Text,
        version -> BigInt,
        epoch -> BigInt,
        ciphertext -> Binary,
        created_at -> BigInt,
        room_id -> Nullable<Text>,
    }
}

diesel::table! {
    reactions (message_id, user_id, emoji) {
        message_id -> Text,
        user_id -> Text,
        emoji -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    room_events (room_id, seq) {
        room_id -> Text,
        seq -> BigInt,
        kind -> Text,
        message_id -> Nullable<Text>,
        actor_id -> Nullable<Text>,
        payload -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    security_groups (id) {
        id -> Text,
        name -> Text,
        precedence -> BigInt,
        is_default -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    security_group_members (group_id, user_id) {
        group_id -> Text,
        user_id -> Text,
        source -> Text,
        added_at -> BigInt,
    }
}

diesel::table! {
    audit_checkpoints (seq) {
        seq -> BigInt,
        hash -> Binary,
        key_id -> Text,
        signature -> Binary,
        signed_at -> BigInt,
    }
}

diesel::table! {
    retention_policies (scope) {
        scope -> Text,
        min_days -> Nullable<BigInt>,
        max_days -> Nullable<BigInt>,
        updated_by -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    retention_jobs (id) {
        id -> Text,
        scope -> Text,
        status -> Text,
        after_message_id -> Nullable<Text>,
        processed -> BigInt,
        changed -> BigInt,
        total -> BigInt,
        created_by -> Text,
        created_at -> BigInt,
        finished_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    legal_holds (id) {
        id -> Text,
        name -> Text,
        reason -> Text,
        starts_at -> Nullable<BigInt>,
        ends_at -> Nullable<BigInt>,
        created_by -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        released_at -> Nullable<BigInt>,
        released_by -> Nullable<Text>,
    }
}

diesel::table! {
    legal_hold_custodians (hold_id, user_id) {
        hold_id -> Text,
        user_id -> Text,
    }
}

diesel::table! {
    legal_hold_rooms (hold_id, room_id) {
        hold_id -> Text,
        room_id -> Text,
    }
}

diesel::table! {
    room_membership_periods (room_id, user_id, joined_at) {
        room_id -> Text,
        user_id -> Text,
        joined_at -> BigInt,
        left_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    security_group_membership_periods (group_id, user_id, joined_at) {
        group_id -> Text,
        user_id -> Text,
        joined_at -> BigInt,
        left_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    attachment_file_deletions (storage_path) {
        storage_path -> Text,
        queued_at -> BigInt,
    }
}

diesel::table! {
    audit_forwarding (destination) {
        destination -> Text,
        last_seq -> BigInt,
    }
}

diesel::table! {
    export_jobs (id) {
        id -> Text,
        format -> Text,
        window_from -> BigInt,
        window_until -> BigInt,
        scope -> Text,
        hold_id -> Nullable<Text>,
        include_files -> Bool,
        status -> Text,
        progress -> Text,
        error -> Nullable<Text>,
        schedule -> Nullable<Text>,
        created_by -> Nullable<Text>,
        created_at -> BigInt,
        started_at -> Nullable<BigInt>,
        finished_at -> Nullable<BigInt>,
        heartbeat_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    key_shred_candidates (room_id, epoch) {
        room_id -> Text,
        epoch -> BigInt,
    }
}

diesel::table! {
    retention_sweeps (id) {
        id -> Text,
        started_at -> BigInt,
        finished_at -> Nullable<BigInt>,
        messages_destroyed -> BigInt,
        attachments_destroyed -> BigInt,
        keys_shredded -> BigInt,
        held -> BigInt,
    }
}

diesel::table! {
    user_identities (provider, subject) {
        provider -> Text,
        subject -> Text,
        user_id -> Text,
        external_name -> Text,
        groups -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    oidc_flows (id) {
        id -> Text,
        provider -> Text,
        nonce -> Text,
        pkce_verifier -> Text,
        binding_hash -> Binary,
        mode -> Text,
        return_to -> Nullable<Text>,
        completed_user_id -> Nullable<Text>,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    org_settings (name) {
        name -> Text,
        value -> Text,
        updated_at -> BigInt,
    }
}

diesel::joinable!(user_identities -> users (user_id));
diesel::joinable!(security_group_members -> security_groups (group_id));
diesel::joinable!(user_roles -> users (user_id));
diesel::joinable!(room_members -> rooms (room_id));
diesel::joinable!(room_members -> users (user_id));
diesel::joinable!(messages -> rooms (room_id));
diesel::joinable!(message_versions -> messages (message_id));
diesel::joinable!(legal_hold_custodians -> legal_holds (hold_id));
diesel::joinable!(legal_hold_rooms -> legal_holds (hold_id));
diesel::joinable!(sessions -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(
    users,
    user_roles,
    sessions,
    login_failures,
    audit_events,
    rooms,
    room_members,
    room_keys,
    attachments,
    messages,
    message_versions,
    reactions,
    room_events,
    message_reads,
    policies,
    security_groups,
    security_group_members,
    audit_checkpoints,
    retention_policies,
    retention_jobs,
    legal_holds,
    legal_hold_custodians,
    legal_hold_rooms,
    room_membership_periods,
    security_group_membership_periods,
    attachment_file_deletions,
    key_shred_candidates,
    audit_forwarding,
    export_jobs,
    retention_sweeps,
    user_identities,
    oidc_flows,
    org_settings,
);
