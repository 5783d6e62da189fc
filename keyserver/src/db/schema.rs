//! Diesel table definitions, shared by the SQLite and PostgreSQL backends.

diesel::table! {
    orgs (id) {
        id -> BigInt,
        name -> Text,
        created_at -> BigInt,
        drop_max_days -> Nullable<Integer>,
        guests -> Text,
        settings_mac -> Nullable<Binary>,
        recipient_domains -> Text,
        recipients_mac -> Nullable<Binary>,
        endpoint_url -> Nullable<Text>,
        endpoint_mac -> Nullable<Binary>,
    }
}

diesel::table! {
    users (id) {
        id -> BigInt,
        org_id -> BigInt,
        email -> Text,
        role -> Text,
        password_hash -> Text,
        disabled -> Bool,
        failed_logins -> Integer,
        locked_until -> Nullable<BigInt>,
        created_at -> BigInt,
        state_mac -> Nullable<Binary>,
    }
}

diesel::table! {
    sessions (token_hash) {
        token_hash -> Binary,
        user_id -> BigInt,
        device_id -> Text,
        created_at -> BigInt,
        last_seen -> BigInt,
        expires_at -> BigInt,
        revoked -> Bool,
        state_mac -> Nullable<Binary>,
    }
}

diesel::table! {
    data_keys (key_id) {
        key_id -> Text,
        report_id -> Text,
        org_id -> BigInt,
        creator_id -> BigInt,
        kek_version -> Integer,
        wrapped -> Binary,
        created_at -> BigInt,
        expires_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
        state_mac -> Nullable<Binary>,
    }
}

diesel::table! {
    key_recipients (key_id, email) {
        key_id -> Text,
        email -> Text,
    }
}

diesel::table! {
    audit_events (seq) {
        seq -> BigInt,
        at -> BigInt,
        actor -> Text,
        org -> Text,
        action -> Text,
        key_id -> Nullable<Text>,
        report_id -> Nullable<Text>,
        client_ip -> Nullable<Text>,
        device_id -> Nullable<Text>,
        outcome -> Text,
        detail -> Text,
        prev_hash -> Binary,
        hash -> Binary,
    }
}

diesel::table! {
    audit_head (id) {
        id -> Integer,
        seq -> BigInt,
        hash -> Binary,
        kek_current -> Integer,
        frontier -> Binary,
        state_bound -> Bool,
    }
}

diesel::table! {
    audit_checkpoints (size) {
        size -> BigInt,
        root -> Binary,
        at -> BigInt,
        signature -> Binary,
    }
}

diesel::table! {
    login_windows (address, window_start) {
        address -> Text,
        window_start -> BigInt,
        attempts -> Integer,
    }
}

diesel::table! {
    drops (drop_id) {
        drop_id -> Text,
        org_id -> BigInt,
        creator_id -> BigInt,
        key_id -> Text,
        size -> BigInt,
        sha256 -> Binary,
        chunks -> Integer,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    drop_chunks (drop_id, seq) {
        drop_id -> Text,
        seq -> Integer,
        bytes -> Binary,
        written_at -> BigInt,
    }
}

diesel::table! {
    login_codes (email) {
        email -> Text,
        code_mac -> Binary,
        org_id -> BigInt,
        guest -> Bool,
        created_at -> BigInt,
        expires_at -> BigInt,
        tries -> Integer,
    }
}

diesel::table! {
    sso_configs (org_id) {
        org_id -> BigInt,
        issuer -> Text,
        client_id -> Text,
        client_secret -> Binary,
        email_claim -> Text,
        allowed_domain -> Nullable<Text>,
        provision -> Text,
        updated_at -> BigInt,
        state_mac -> Binary,
    }
}

diesel::table! {
    sso_flows (state_hash) {
        state_hash -> Binary,
        org_id -> BigInt,
        nonce -> Text,
        pkce_verifier -> Text,
        device_id -> Text,
        return_to -> Text,
        client_challenge -> Text,
        expires_at -> BigInt,
        state_mac -> Binary,
    }
}

diesel::table! {
    sso_grants (grant_hash) {
        grant_hash -> Binary,
        user_id -> BigInt,
        device_id -> Text,
        client_challenge -> Text,
        expires_at -> BigInt,
        state_mac -> Binary,
    }
}

diesel::joinable!(users -> orgs (org_id));
diesel::joinable!(login_codes -> orgs (org_id));
diesel::joinable!(sso_configs -> orgs (org_id));
diesel::joinable!(sso_flows -> orgs (org_id));
diesel::joinable!(sso_grants -> users (user_id));
diesel::joinable!(drops -> orgs (org_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(data_keys -> orgs (org_id));

diesel::allow_tables_to_appear_in_same_query!(
    orgs,
    users,
    sessions,
    data_keys,
    key_recipients,
    audit_events,
    audit_head,
    audit_checkpoints,
    drops,
    drop_chunks,
    login_codes,
    sso_configs,
    sso_flows,
    sso_grants,
);
