"""Accounts, API keys and signing secrets, as the API, the agents and the CLI all need them.

API keys are shown once and stored as sha256 hashes: a leaked table leaks no key.
Signing secrets (render URLs and webhooks) must be usable, so they are stored as
they are; an account keeps up to two, newest first, so a secret can rotate
without breaking URLs signed with the previous one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from imgkit.db import BatchLoader, Database
from imgkit.ids import new_id

MAX_ACTIVE_SECRETS = 2


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    webhook_url: str
    signing_secrets: tuple[str, ...]  # newest first; the first one signs, all verify

    @property
    def signing_secret(self) -> str:
        return self.signing_secrets[0]


@dataclass(frozen=True)
class NewAccount:
    account: Account
    api_key: str  # shown once, never stored in clear


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_signing_secret() -> str:
    """Standard Webhooks' secret format, also used as the HMAC key of render URLs."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def new_api_key() -> str:
    return "ik_" + secrets.token_urlsafe(32)


class AccountStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._by_key: dict[str, tuple[float, Account | None]] = {}
        self._by_id: dict[str, tuple[float, Account | None]] = {}
        # Misses at the same moment share one query: when the cached entry expires under
        # load, every webhook in flight asks for the account at once (13 identical queries
        # in one benchmark run, where one does).
        self._loader: BatchLoader[str, Account] = BatchLoader(self._accounts_by_id)
        self.cache_seconds = 5.0

    async def create(self, name: str, webhook_url: str = "") -> NewAccount:
        account = Account(new_id("acc"), name, webhook_url, (new_signing_secret(),))
        await self._write(account)
        api_key = await self.add_key(account.id)
        return NewAccount(account, api_key)

    async def add_key(self, account_id: str) -> str:
        api_key = new_api_key()
        await self.db.insert("api_keys", [{
            "key_hash": hash_key(api_key), "key_id": new_id("key"), "account_id": account_id,
            "created_at": datetime.now(UTC), "version": time.time_ns() // 1000, "deleted": 0}])
        return api_key

    async def rotate_secret(self, account_id: str) -> Account:
        account = await self.get(account_id, fresh=True)
        if account is None:
            raise KeyError(account_id)
        rotated = Account(account.id, account.name, account.webhook_url,
                          (new_signing_secret(), *account.signing_secrets)[:MAX_ACTIVE_SECRETS])
        await self._write(rotated)
        return rotated

    async def _write(self, account: Account) -> None:
        await self.db.insert("accounts", [{
            "id": account.id, "name": account.name, "webhook_url": account.webhook_url,
            "signing_secrets": list(account.signing_secrets), "created_at": datetime.now(UTC),
            "version": time.time_ns() // 1000, "deleted": 0}])
        self._by_id.pop(account.id, None)

    async def get(self, account_id: str, *, fresh: bool = False) -> Account | None:
        cached = self._by_id.get(account_id)
        if cached and not fresh and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        account = await self._loader.load(account_id)
        self._by_id[account_id] = (time.monotonic(), account)
        return account

    async def _accounts_by_id(self, ids: list[str]) -> dict[str, Account]:
        rows = await self.db.query(
            "SELECT id, name, webhook_url, signing_secrets FROM accounts FINAL "
            "WHERE id IN {ids:Array(String)}", {"ids": ids})
        return {r["id"]: Account(r["id"], r["name"], r["webhook_url"], tuple(r["signing_secrets"]))
                for r in rows}

    async def by_api_key(self, api_key: str) -> Account | None:
        digest = hash_key(api_key)
        cached = self._by_key.get(digest)
        if cached and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        row = await self.db.query_one(
            "SELECT account_id FROM api_keys FINAL WHERE key_hash = {h:String}", {"h": digest})
        account = None if row is None else await self.get(row["account_id"])
        self._by_key[digest] = (time.monotonic(), account)
        return account


async def ensure_dev_account(store: AccountStore, path: Path) -> tuple[dict[str, str], bool]:
    """The development account of `imgkit dev`: created on the first start, reused after.

    Returns its credentials (as written to `path`) and whether it was just created.
    """
    if path.exists():
        saved = json.loads(path.read_text())
        if await store.get(saved["account_id"], fresh=True) is not None:
            return saved, False
    created = await store.create("development", "")
    saved = {"account_id": created.account.id, "api_key": created.api_key,
             "signing_secret": created.account.signing_secret}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(saved, indent=2) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return saved, True
