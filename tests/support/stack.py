"""The app as the end-to-end tests run it: two accounts (alice, bob) whose webhooks go to
a verifying receiver, on the in-process bus or on real Kafka with a fresh topic prefix."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from imgkit.accounts import NewAccount
from imgkit.runtime import Mode, Runtime
from imgkit.settings import load_settings
from tests.support.app_server import AppServer, free_port
from tests.support.webhooks import WebhookReceiver


def start_app(tmp_path: Path, hooks: WebhookReceiver, kafka: str | None,
              **settings: Any) -> tuple[AppServer, NewAccount, NewAccount]:
    """Start ImgKit (`dev`, or `combined` on Kafka when `kafka` is a bootstrap address) with
    loopback downloads and webhooks allowed; `settings` override the test defaults."""
    accounts: dict[str, NewAccount] = {}

    async def create_accounts(runtime: Runtime) -> None:
        accounts["alice"] = await runtime.accounts.create("alice", hooks.url("/alice"))
        accounts["bob"] = await runtime.accounts.create("bob", hooks.url("/bob"))

    overrides: dict[str, Any] = dict(
        data_dir=tmp_path / "data", port=free_port(), fetch_allow_private=True,
        webhook_allow_private=True, webhook_backoff_base=0.2, log_format="console")
    overrides.update(settings)
    if kafka:
        overrides.update(bus="kafka", kafka_bootstrap=kafka, topic_prefix=f"e2e{uuid.uuid4().hex[:8]}")
    mode = Mode.combined if kafka else Mode.dev
    app = AppServer(load_settings(**overrides), mode, create_accounts).start(timeout=120)
    for name, new in accounts.items():
        hooks.secrets[f"/{name}"] = new.account.signing_secret
    return app, accounts["alice"], accounts["bob"]
