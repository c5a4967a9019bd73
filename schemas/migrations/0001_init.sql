-- Accounts, API keys, images, the stage log and webhook attempts.
-- ReplacingMergeTree where a row is updated (latest `version` wins, `deleted` = 1
-- removes it under FINAL); MergeTree where rows only arrive.

CREATE TABLE IF NOT EXISTS accounts (
    id String,
    name String,
    webhook_url String,
    signing_secrets Array(String),
    created_at DateTime64(3, 'UTC'),
    version UInt64,
    deleted UInt8 DEFAULT 0
) ENGINE = ReplacingMergeTree(version, deleted) ORDER BY id;

CREATE TABLE IF NOT EXISTS api_keys (
    key_hash String,
    key_id String,
    account_id String,
    created_at DateTime64(3, 'UTC'),
    version UInt64,
    deleted UInt8 DEFAULT 0
) ENGINE = ReplacingMergeTree(version, deleted) ORDER BY key_hash;

CREATE TABLE IF NOT EXISTS images (
    account_id String,
    id String,
    version UInt64,
    deleted UInt8 DEFAULT 0,
    created_at DateTime64(3, 'UTC'),
    updated_at DateTime64(3, 'UTC'),
    status LowCardinality(String),
    url String,
    final_url String,
    filename String,
    content_type LowCardinality(String),
    checksum String,
    byte_size UInt64,
    width UInt32,
    height UInt32,
    phash String,
    dhash String,
    exif String,
    xmp String,
    palette String,
    passthrough String,
    options String,
    webhook_url String,
    idempotency_key String,
    error_code LowCardinality(String),
    error_message String,
    camera_make LowCardinality(String),
    camera_model LowCardinality(String),
    lens_model String,
    iso Nullable(UInt32),
    f_number Nullable(Float32),
    exposure_time Nullable(Float64),
    focal_length Nullable(Float32),
    taken_at Nullable(DateTime64(3, 'UTC')),
    gps_latitude Nullable(Float64),
    gps_longitude Nullable(Float64),
    gps_altitude Nullable(Float64)
) ENGINE = ReplacingMergeTree(version, deleted) ORDER BY (account_id, id);

CREATE TABLE IF NOT EXISTS stage_events (
    account_id String,
    image_id String,
    stage LowCardinality(String),
    outcome LowCardinality(String),
    duration_ms Float64,
    error_code LowCardinality(String),
    at DateTime64(3, 'UTC')
) ENGINE = MergeTree ORDER BY (account_id, at);

CREATE TABLE IF NOT EXISTS webhook_attempts (
    account_id String,
    event_id String,
    event_type LowCardinality(String),
    image_id String,
    url String,
    attempt UInt16,
    status_code UInt16,
    outcome LowCardinality(String),
    error String,
    duration_ms Float64,
    at DateTime64(3, 'UTC')
) ENGINE = MergeTree ORDER BY (account_id, at);
