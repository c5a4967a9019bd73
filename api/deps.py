"""Request dependencies: the runtime, and the account behind the bearer key."""

from __future__ import annotations

from fastapi import Depends, Request

from api.limits import RateLimiter
from imgkit.accounts import Account
from imgkit.errors import Unauthorized
from imgkit.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    """Async though it awaits nothing: FastAPI runs a plain `def` dependency in a worker
    thread, a thread handoff per request for an attribute read."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def current_account(request: Request, runtime: Runtime = Depends(get_runtime)) -> Account:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing API key: send `Authorization: Bearer <api key>`")
    account = await runtime.accounts.by_api_key(token.strip())
    if account is None:
        raise Unauthorized("unknown or revoked API key")
    limiter: RateLimiter = request.app.state.rate_limiter
    limiter.check(token.strip())
    return account
