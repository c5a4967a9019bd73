"""The `imgkit` command: run the service in any mode, and use it from a terminal."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from imgkit.errors import ImgKitError
from imgkit.logging import configure_logging
from imgkit.settings import Settings, load_settings, settings_markdown

app = typer.Typer(help="ImgKit: image metadata, perceptual hashes, near-duplicates, thumbnails.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
accounts_app = typer.Typer(help="Accounts and API keys.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Overrides IMGKIT_DATA_DIR.")]
Port = Annotated[int | None, typer.Option("--port", help="Overrides IMGKIT_PORT.")]
Host = Annotated[str | None, typer.Option("--host", help="Overrides IMGKIT_HOST.")]


def _settings(**overrides: Any) -> Settings:
    try:
        settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ImgKitError as exc:
        typer.echo(f"imgkit: {exc.message}", err=True)
        raise typer.Exit(2) from None
    fmt = settings.log_format.value if not sys.stderr.isatty() else "console"
    configure_logging(settings.log_level, fmt)
    return settings


def _run(coro: Awaitable[Any]) -> Any:
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except ImgKitError as exc:
        typer.echo(f"imgkit: {exc}", err=True)
        raise typer.Exit(1) from None


def _serve(settings: Settings, mode_name: str,
           on_started: Callable[[Any], Awaitable[None]] | None = None) -> None:
    import uvicorn

    from api.app import create_app
    from imgkit.runtime import Mode

    application = create_app(settings, Mode(mode_name), on_started=on_started)
    uvicorn.run(application, host=settings.host, port=settings.port, log_config=None,
                access_log=False, timeout_graceful_shutdown=10)


@app.command()
def dev(port: Port = None, data_dir: DataDir = None, host: Host = None) -> None:
    """Everything in one process: API, agents, index, on the in-process bus and embedded
    ClickHouse (chDB). No Java, Kafka or server needed."""
    settings = _settings(port=port, data_dir=data_dir, host=host)

    async def announce(runtime: Any) -> None:
        from imgkit.accounts import ensure_dev_account

        path = settings.data_dir / "dev-account.json"
        creds, created = await ensure_dev_account(runtime.accounts, path)
        state = "created" if created else "reusing"
        typer.echo(f"ImgKit dev on {settings.public_url}  (docs: {settings.public_url}/docs)\n"
                   f"  {state} development account {creds['account_id']}\n"
                   f"  api key:        {creds['api_key']}\n"
                   f"  signing secret: {creds['signing_secret']}\n"
                   f"  saved in {path}", err=True)

    _serve(settings, "dev", announce)


@app.command()
def api(port: Port = None, host: Host = None) -> None:
    """The API alone (cluster mode): produces to Kafka, reads ClickHouse."""
    _serve(_settings(port=port, host=host, bus="kafka"), "api")


@app.command()
def combined(port: Port = None, host: Host = None, data_dir: DataDir = None) -> None:
    """API and Faust worker in one process: a single node with Kafka (and possibly chDB,
    which allows one process per data directory)."""
    _serve(_settings(port=port, host=host, data_dir=data_dir, bus="kafka"), "combined")


@app.command()
def worker() -> None:
    """The Faust worker (cluster mode): runs every agent against Kafka."""
    settings = _settings(bus="kafka")

    async def main() -> None:
        import signal

        from imgkit.runtime import Mode, open_runtime

        runtime = await open_runtime(settings, Mode.worker)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await runtime.start()
        try:
            await stop.wait()
        finally:
            await runtime.stop()

    _run(main())


@app.command()
def screenshot(port: Annotated[int | None, typer.Option("--port")] = None,
               host: Annotated[str | None, typer.Option("--host")] = None) -> None:
    """The screenshot service: headless Chromium behind an SSRF-filtering proxy. Listen on
    loopback or an internal network only; the API forwards signed requests to it."""
    settings = _settings(screenshot_port=port, screenshot_host=host)
    from api.screenshot import serve

    serve(settings)


@app.command()
def index(
    partitions: Annotated[str | None, typer.Option(
        "--partitions", help="Partitions of <prefix>.images.hashes this shard owns, e.g. 0,1.")] = None,
    shard: Annotated[int | None, typer.Option("--shard", help="This shard's number i (with --shards): "
                                              "owns the partitions p with p % n == i.")] = None,
    shards: Annotated[int | None, typer.Option("--shards", help="Number of shards n.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Overrides IMGKIT_INDEX_PORT.")] = None,
    host: Host = None,
    data_dir: DataDir = None,
    snapshot: Annotated[Path | None, typer.Option(
        "--snapshot", help="Snapshot file; default <data_dir>/index/<topic>.p<partitions>.npz.")] = None,
    snapshot_interval: Annotated[float, typer.Option(
        "--snapshot-interval", help="Seconds between snapshots (one is also written on shutdown).")] = 60.0,
    rebuild_margin: Annotated[float, typer.Option(
        "--rebuild-margin", help="Seconds of the hashes topic replayed before a rebuild from "
        "ClickHouse, for images stored just after their hashes were published.")] = 300.0,
) -> None:
    """A near-duplicate index shard (cluster mode): consumes its partitions of the hashes
    topic, snapshots itself with the offsets it applied, serves /similar to the API (list
    the shards in the API's IMGKIT_INDEX_URLS). Internal: listen on a private network only."""
    settings = _settings(index_port=port, host=host, data_dir=data_dir)
    from index.feed import FeedOptions, parse_partitions
    from index.http import serve

    try:
        options = FeedOptions(
            partitions=parse_partitions(partitions) if partitions is not None else None,
            shard=shard, shards=shards, snapshot_path=snapshot, snapshot_interval=snapshot_interval,
            rebuild_margin=rebuild_margin)
    except ImgKitError as exc:
        typer.echo(f"imgkit: {exc.message}", err=True)
        raise typer.Exit(2) from None
    serve(settings, options, settings.host, settings.index_port)


@app.command()
def migrate(data_dir: DataDir = None) -> None:
    """Apply ClickHouse migrations (services also apply them on start)."""
    settings = _settings(data_dir=data_dir)

    async def main() -> None:
        from imgkit.db import Database
        from schemas.migrate import migrate as apply

        db = Database(settings.clickhouse_url)
        try:
            applied = await apply(db)
        finally:
            db.close()
        typer.echo(f"applied {len(applied)} migration(s): "
                   + (", ".join(f"{m.version:04d}_{m.name}" for m in applied) or "none pending"))

    _run(main())


@accounts_app.command("create")
def accounts_create(name: str, webhook_url: Annotated[str, typer.Option("--webhook-url")] = "",
                    data_dir: DataDir = None) -> None:
    """Create an account; prints its id, API key (shown once) and signing secret as JSON."""
    settings = _settings(data_dir=data_dir)

    async def main() -> None:
        from imgkit.accounts import AccountStore
        from imgkit.db import Database
        from schemas.images import check_http_url
        from schemas.migrate import migrate as apply

        if webhook_url:
            try:
                check_http_url(webhook_url, "webhook_url")
            except ValueError as exc:
                typer.echo(f"imgkit: {exc}", err=True)
                raise typer.Exit(2) from None
        db = Database(settings.clickhouse_url)
        try:
            await apply(db)
            created = await AccountStore(db).create(name, webhook_url)
        finally:
            db.close()
        typer.echo(json.dumps({"account_id": created.account.id, "api_key": created.api_key,
                               "signing_secret": created.account.signing_secret}, indent=2))

    _run(main())


@app.command()
def inspect(targets: Annotated[list[str], typer.Argument(help="Files or http(s) URLs.")],
            as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False) -> None:
    """Run ImgKit's extraction locally and print the same result object the API returns."""
    settings = _settings()

    async def main() -> list[dict[str, Any]]:
        from imgkit.inspect import inspect_target

        return [await inspect_target(t, settings) for t in targets]

    results = _run(main())
    if as_json or len(results) > 1:
        typer.echo(json.dumps(results if len(results) > 1 else results[0], indent=2,
                              ensure_ascii=False))
    else:
        for key, value in results[0].items():
            if value is None:
                continue
            shown = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value
            typer.echo(f"{key:<14} {shown}")
    if any(r.get("status") == "failed" for r in results):
        raise typer.Exit(1)


def _client(settings: Settings) -> Any:
    from imgkit.client import Client, resolve_api_key

    try:
        return Client(settings.public_url, resolve_api_key(settings))
    except ImgKitError as exc:
        typer.echo(f"imgkit: {exc.message}", err=True)
        raise typer.Exit(2) from None


@app.command()
def submit(urls: list[str], data_dir: DataDir = None) -> None:
    """Submit image URLs to a running server (IMGKIT_PUBLIC_URL); prints each image as JSON."""
    settings = _settings(data_dir=data_dir)
    client = _client(settings)

    async def main() -> None:
        from imgkit.client import submit_many

        try:
            report = await submit_many(client, urls, concurrency=8, progress=len(urls) > 1)
        finally:
            await client.close()
        for image in report.submitted:
            typer.echo(json.dumps(image))
        for url, error in report.failed:
            typer.echo(f"imgkit: {url}: {error}", err=True)
        if report.failed:
            raise typer.Exit(1)

    _run(main())


@app.command("import")
def import_urls(file: Annotated[Path, typer.Argument(help="One URL a line; '-' reads stdin.")],
                concurrency: Annotated[int, typer.Option(min=1, max=64)] = 8,
                data_dir: DataDir = None) -> None:
    """Submit every URL of a file with a progress bar; prints a summary and the failures."""
    settings = _settings(data_dir=data_dir)
    lines = sys.stdin.read().splitlines() if str(file) == "-" else file.read_text().splitlines()
    client = _client(settings)

    async def main() -> None:
        from imgkit.client import submit_many

        try:
            report = await submit_many(client, lines, concurrency=concurrency)
        finally:
            await client.close()
        typer.echo(f"submitted {len(report.submitted)}, failed {len(report.failed)}")
        for url, error in report.failed:
            typer.echo(f"  {url}: {error}", err=True)
        if report.failed:
            raise typer.Exit(1)

    _run(main())


@app.command()
def get(image_id: str, data_dir: DataDir = None) -> None:
    """Print one image of a running server as JSON."""
    settings = _settings(data_dir=data_dir)
    client = _client(settings)

    async def main() -> None:
        try:
            typer.echo(json.dumps(await client.get(image_id), indent=2, ensure_ascii=False))
        finally:
            await client.close()

    _run(main())


@app.command()
def sign(target: Annotated[str, typer.Argument(help='Path and query, e.g. "/thumbnail?url=...&w=300", '
                                             "or a full URL.")],
         account: Annotated[str | None, typer.Option("--account", help="Account id (default: the "
                                                     "development account).")] = None,
         secret: Annotated[str | None, typer.Option("--secret", help="Signing secret (default: the "
                                                    "development account's).")] = None,
         data_dir: DataDir = None) -> None:
    """Print a signed render URL (thumbnail, proxy, screenshot, card)."""
    from imgkit.signing import sign_url

    settings = _settings(data_dir=data_dir)
    if account is None or secret is None:
        path = settings.data_dir / "dev-account.json"
        if not path.exists():
            typer.echo(f"imgkit: give --account and --secret, or run `imgkit dev` once to create {path}",
                       err=True)
            raise typer.Exit(2)
        creds = json.loads(path.read_text())
        account = account or creds["account_id"]
        secret = secret or creds["signing_secret"]
    if not target.startswith(("http://", "https://")):
        target = settings.public_url.rstrip("/") + "/" + target.lstrip("/")
    try:
        typer.echo(sign_url(target, account, secret))
    except ValueError as exc:
        typer.echo(f"imgkit: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def schemas() -> None:
    """Write the JSON Schema of every topic's record to schemas/json/."""
    from agents.topology import ALL_TOPICS
    from schemas.jsonschema import write_schemas

    for path in write_schemas(ALL_TOPICS):
        typer.echo(f"wrote {path}")


@app.command("settings")
def show_settings(markdown: Annotated[bool, typer.Option("--markdown")] = False) -> None:
    """Print the effective settings (or, with --markdown, the documentation table)."""
    if markdown:
        typer.echo(settings_markdown())
        return
    typer.echo(_settings().model_dump_json(indent=2))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
