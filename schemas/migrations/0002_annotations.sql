-- Annotation requests and the shared result cache of vision providers.
--
-- `annotations`: one row per request (`ann_` id), updated from pending to
-- completed/failed (latest `version` wins; `deleted` = 1 removes it under FINAL
-- when its image is deleted). `result` is the provider-neutral JSON of the
-- features asked (schemas/annotations.py, without `raw`); `raw` is the
-- provider's own answer. `checksum` and `source_url` let a pending request be
-- submitted again after a crash of the embedded bus.
--
-- `annotation_cache`: what a provider answered for one feature of one image
-- content (sha256), whatever the account or request, so a feature is paid for
-- once per distinct image and provider. Never deleted with an image: it holds
-- no account data, and another account may hold the same bytes.

CREATE TABLE IF NOT EXISTS annotations (
    account_id String,
    image_id String,
    id String,
    version UInt64,
    deleted UInt8 DEFAULT 0,
    created_at DateTime64(3, 'UTC'),
    updated_at DateTime64(3, 'UTC'),
    status LowCardinality(String),
    provider LowCardinality(String),
    features Array(LowCardinality(String)),
    cached_features Array(LowCardinality(String)),
    checksum String,
    source_url String,
    result String,
    raw String,
    passthrough String,
    webhook_url String,
    error_code LowCardinality(String),
    error_message String
) ENGINE = ReplacingMergeTree(version, deleted) ORDER BY (account_id, image_id, id);

CREATE TABLE IF NOT EXISTS annotation_cache (
    checksum String,
    provider LowCardinality(String),
    feature LowCardinality(String),
    version UInt64,
    result String,
    raw String,
    created_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(version) ORDER BY (checksum, provider, feature);
