"""All of ImgKit's configuration, read from `IMGKIT_*` environment variables.

This is the one place settings are declared; nothing else reads `os.environ`.
Each field's description is its documentation: `imgkit settings --markdown`
prints the README's settings table from them, so the table cannot drift.
"""

from __future__ import annotations

import os
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from imgkit.errors import ConfigError


class BusKind(StrEnum):
    memory = "memory"
    kafka = "kafka"


class LogFormat(StrEnum):
    json = "json"
    console = "console"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMGKIT_", extra="ignore", validate_default=True)

    # --- where things live -------------------------------------------------------------
    data_dir: Path = Field(Path(".data"), description="Directory for embedded storage, the source "
                           "cache, index snapshots and the development account.")
    clickhouse_url: str = Field("", description="`chdb:///abs/path` (embedded ClickHouse engine, one "
                                "process per directory) or `http(s)://user:pass@host:8123/db`. Empty: "
                                "`chdb://<data_dir>/clickhouse`.")
    # --- event bus -----------------------------------------------------------------------
    bus: BusKind = Field(BusKind.memory, description="`memory` (in-process asyncio bus, embedded "
                         "mode) or `kafka` (Apache Kafka through Faust).")
    kafka_bootstrap: str = Field("localhost:9092", description="Kafka bootstrap servers, "
                                 "comma-separated `host:port`.")
    topic_prefix: str = Field("imgkit", description="Prefix of every topic name "
                              "(`<prefix>.images.requested`...) and of the Faust app id.")
    topic_partitions: int = Field(4, ge=1, le=1024, description="Partitions of each topic "
                                  "(and of the in-process bus).")
    bus_queue_size: int = Field(256, ge=1, description="Bound of each in-process partition queue: "
                                "producers wait when it is full (back-pressure).")
    # --- HTTP API ------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address the API listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port the API listens on.")
    public_url: str = Field("", description="Base URL clients use to reach the API (for signed "
                            "URLs printed by `imgkit sign`). Empty: `http://<host>:<port>`.")
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="Largest accepted JSON request body.")
    rate_limit_per_minute: int = Field(600, ge=1, description="Requests per minute per API key "
                                       "before 429.")
    # --- downloads -----------------------------------------------------------------------
    fetch_allow_private: bool = Field(False, description="Allow downloads from private, loopback and "
                                      "link-local addresses. Only for tests and private deployments.")
    fetch_max_bytes: int = Field(50 * 1024 * 1024, ge=1024, description="Largest source download.")
    fetch_timeout: float = Field(20.0, gt=0, description="Seconds for a whole download, "
                                 "redirects included.")
    fetch_max_redirects: int = Field(5, ge=0, le=20, description="Redirects followed per download.")
    fetch_user_agent: str = Field("ImgKit/0.1 (+https://github.com/imgkit/imgkit)",
                                  description="User-Agent of downloads.")
    max_pixels: int = Field(100_000_000, ge=1, description="Largest decoded image (width x height); "
                            "larger ones fail as a decompression bomb.")
    source_cache_dir: Path | None = Field(None, description="Source cache directory. Empty: "
                                          "`<data_dir>/sources`.")
    source_cache_max_bytes: int = Field(5 * 1024**3, ge=1024 * 1024, description="Source cache size; "
                                        "least recently used sources are evicted past it.")
    # --- processing ----------------------------------------------------------------------
    process_concurrency: int = Field(0, ge=0, le=64, description="Images decoded at once per worker "
                                     "(downloads of 4x as many overlap). 0: CPU cores + 1, which keeps "
                                     "the cores busy while other images wait on I/O.")
    process_max_attempts: int = Field(3, ge=1, le=20, description="Attempts for a transient "
                                      "processing failure before the image fails.")
    # --- webhooks ------------------------------------------------------------------------
    webhook_timeout: float = Field(10.0, gt=0, description="Seconds per webhook attempt.")
    webhook_max_attempts: int = Field(8, ge=1, le=30, description="Attempts before a webhook goes "
                                      "to the dead-letter topic.")
    webhook_backoff_base: float = Field(2.0, gt=0, description="First retry delay in seconds; "
                                        "doubles each attempt, with full jitter.")
    webhook_backoff_max: float = Field(3600.0, gt=0, description="Longest delay between attempts.")
    webhook_allow_private: bool = Field(False, description="Allow webhooks to private and loopback "
                                        "addresses (tests, private deployments).")
    # --- rendering -----------------------------------------------------------------------
    render_concurrency: int = Field(2, ge=1, le=64, description="Renders at once; further requests "
                                    "queue.")
    render_max_output_pixels: int = Field(16_000_000, ge=1, description="Largest thumbnail "
                                          "(width x height x dpr^2).")
    render_formats: Annotated[list[str], NoDecode] = Field(
        ["jpeg", "png", "webp", "avif"], description="Output formats allowed (comma-separated).")
    render_timeout: float = Field(10.0, gt=0, description="Seconds a thumbnail may take, queueing "
                                  "included; past it the render stops with 503.")
    render_decoded_cache_bytes: int = Field(256 * 2**20, ge=0, description="Memory for decoded "
                                            "sources, so the variants of one source share one decode "
                                            "(0 turns it off).")
    screenshot_url: str = Field("http://127.0.0.1:8300", description="Base URL of the screenshot "
                                "service (`imgkit screenshot`).")
    screenshot_host: str = Field("127.0.0.1", description="Address `imgkit screenshot` listens on.")
    screenshot_port: int = Field(8300, ge=1, le=65535, description="Port `imgkit screenshot` "
                                 "listens on.")
    chromium_path: Path = Field(Path("/usr/bin/chromium"), description="Chromium executable for "
                                "screenshots.")
    screenshot_timeout: float = Field(15.0, gt=0, description="Seconds a page may take to load "
                                      "and render.")
    screenshot_concurrency: int = Field(2, ge=1, le=16, description="Pages rendered at once by the "
                                        "screenshot service (one warm Chromium); further requests queue.")
    # --- index ---------------------------------------------------------------------------
    index_urls: Annotated[list[str], NoDecode] = Field(
        [], description="Index shard base URLs (comma-separated). Empty: the index lives in the API "
        "process.")
    index_engine: str = Field("mih", description="Near-duplicate engine: `mih`, `vptree`, `brute`.")
    index_port: int = Field(8100, ge=1, le=65535, description="Port `imgkit index` listens on.")
    # --- annotations ---------------------------------------------------------------------
    vision_provider: str = Field("local", description="Default annotation provider: `google`, "
                                 "`tesseract` or `local`.")
    google_vision_endpoint: str = Field("", description="Override of the Vision API endpoint "
                                        "(host[:port], or `http://host:port` for a plain-HTTP fake "
                                        "server); empty uses Google's.")
    google_vision_credentials: Path | None = Field(None, description="Service-account JSON key for "
                                                   "Google Vision. Empty: Application Default "
                                                   "Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, "
                                                   "gcloud, metadata server); if none are found and "
                                                   "an endpoint override is set, anonymous "
                                                   "credentials (fake servers in tests).")
    google_vision_max_results: int = Field(10, ge=1, le=100, description="Most results Google "
                                           "returns per feature (labels, objects...).")
    vision_timeout: float = Field(30.0, gt=0, description="Seconds one provider call may take "
                                  "(a Google request, a tesseract run).")
    tesseract_path: Path = Field(Path("/usr/bin/tesseract"), description="tesseract executable for "
                                 "the `tesseract` provider (Debian: `apt-get install tesseract-ocr`).")
    tesseract_languages: str = Field("eng", description="tesseract languages, `+`-separated "
                                     "(`eng+deu`); each needs its `tesseract-ocr-<lang>` package.")
    annotate_concurrency: int = Field(4, ge=1, le=64, description="Annotation requests handled at "
                                      "once per worker (provider calls in flight).")
    annotate_max_attempts: int = Field(4, ge=1, le=20, description="Attempts of a provider call "
                                       "that fails transiently (rate limit, 5xx, timeout) before "
                                       "the annotation request fails.")
    annotate_backoff_base: float = Field(1.0, gt=0, description="First delay in seconds between "
                                         "provider attempts; doubles each attempt, with jitter.")
    annotate_backoff_max: float = Field(30.0, gt=0, description="Longest delay between provider "
                                        "attempts.")
    # --- command-line client ---------------------------------------------------------------
    api_key: str = Field("", description="API key of `imgkit submit`, `import` and `get`. Empty: the "
                         "development account's, from `<data_dir>/dev-account.json`.")
    # --- logs ----------------------------------------------------------------------------
    log_level: str = Field("INFO", description="Log level.")
    log_format: LogFormat = Field(LogFormat.json, description="`json` (production) or `console`.")

    @field_validator("render_formats", "index_urls", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("clickhouse_url")
    @classmethod
    def _check_clickhouse_url(cls, value: str) -> str:
        if value and not value.startswith(("chdb://", "http://", "https://")):
            raise ValueError("must start with chdb://, http:// or https:// "
                             f"(got {value!r}); e.g. chdb:///var/lib/imgkit/clickhouse")
        if value.startswith("chdb://") and not value.removeprefix("chdb://").startswith("/"):
            raise ValueError(f"a chdb URL needs an absolute path: chdb:///abs/path (got {value!r})")
        return value

    @field_validator("render_formats")
    @classmethod
    def _check_formats(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - {"jpeg", "png", "webp", "avif"})
        if unknown:
            raise ValueError(f"unknown formats {unknown}; choose from jpeg, png, webp, avif")
        return value

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().resolve()
        if not self.clickhouse_url:
            self.clickhouse_url = f"chdb://{self.data_dir / 'clickhouse'}"
        if self.source_cache_dir is None:
            self.source_cache_dir = self.data_dir / "sources"
        if self.process_concurrency == 0:
            self.process_concurrency = (os.cpu_count() or 1) + 1
        if not self.public_url:
            self.public_url = f"http://{self.host}:{self.port}"
        return self

    @property
    def sources_dir(self) -> Path:
        assert self.source_cache_dir is not None  # set by _derive_defaults
        return self.source_cache_dir

    @property
    def embedded_storage(self) -> bool:
        return self.clickhouse_url.startswith("chdb://")

    def topic(self, suffix: str) -> str:
        return f"{self.topic_prefix}.{suffix}"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; raise ConfigError with one line per bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            env = f"IMGKIT_{field.upper()}"
            value = err.get("input")
            lines.append(f"{env}={value!r}: {err['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def settings_markdown() -> str:
    """The settings table of the README, generated from the field descriptions."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, list):
            default = ",".join(default)
        shown = "" if default in (None, "") else f"`{default}`"
        rows.append(f"| `IMGKIT_{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(rows)
