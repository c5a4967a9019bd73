"""The composition root: settings → storage → bus → agents, for each way of running.

| mode      | bus              | agents here | API here |
|-----------|------------------|-------------|----------|
| dev       | in-process       | all + index | yes      |
| api       | Kafka (producer) | none        | yes      |
| worker    | Kafka (Faust)    | all         | no       |
| combined  | Kafka (Faust)    | all         | yes      |

`combined` exists because chDB allows one process per data directory: a single
node with Kafka and embedded storage runs the API and the worker together.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from enum import StrEnum

from agents.annotate.store import AnnotationStore
from agents.context import AgentContext
from agents.store import ImageStore
from agents.topology import (
    ANNOTATIONS_REQUESTED,
    IMAGES_HASHES,
    IMAGES_REQUESTED,
    TopologyOptions,
    build_topology,
)
from imaging.fetch import guarded_session, make_client
from imaging.source_cache import SourceCache
from imgkit.accounts import AccountStore
from imgkit.db import Database
from imgkit.settings import BusKind, Settings
from index.service import IndexService
from schemas.events import AnnotationRequested, ExtractOptions, ImageHashes, ImageRequested
from schemas.migrate import migrate
from streams.memory import MemoryRunner
from streams.runner import Runner
from streams.topology import Topology

log = logging.getLogger("imgkit.runtime")


class Mode(StrEnum):
    dev = "dev"
    api = "api"
    worker = "worker"
    combined = "combined"


@dataclass
class Runtime:
    settings: Settings
    mode: Mode
    db: Database
    accounts: AccountStore
    images: ImageStore
    sources: SourceCache
    context: AgentContext
    topology: Topology
    runner: Runner
    started: bool = field(default=False)

    async def submit(self, request: ImageRequested) -> None:
        await self.runner.send(IMAGES_REQUESTED, request)

    async def request_annotations(self, request: AnnotationRequested) -> None:
        await self.runner.send(ANNOTATIONS_REQUESTED, request)

    async def forget_hashes(self, account_id: str, image_id: str) -> None:
        await self.runner.send(IMAGES_HASHES, ImageHashes(
            image_id=image_id, account_id=account_id, deleted=True))

    async def start(self) -> None:
        if isinstance(self.context.index, IndexService):
            # the in-process index is not persisted: chDB has every completed image's hashes
            await self.context.index.load_from_database(self.db)
        await self.runner.start()
        self.started = True
        if self.mode is Mode.dev:
            await self.resubmit_unfinished()

    async def stop(self) -> None:
        if self.started:
            await self.runner.stop()
        await self.context.fetch_client.close()
        await self.context.webhook_client.close()
        await self.context.providers.aclose()
        self.sources.close()
        self.db.close()

    async def resubmit_unfinished(self) -> None:
        """The in-process bus forgets what it held when the process died; storage does not.
        Images still pending are submitted again (processing is idempotent)."""
        rows = await self.images.unfinished()
        for row in rows:
            await self.submit(ImageRequested(
                image_id=row["id"], account_id=row["account_id"], url=row["url"],
                passthrough=json.loads(row["passthrough"]) if row["passthrough"] else None,
                options=ExtractOptions.model_validate_json(row["options"] or "{}"),
                webhook_url=row["webhook_url"] or None, idempotency_key=row["idempotency_key"] or None,
                created_at=row["created_at"]))
        if rows:
            log.info("resubmitted unfinished images", extra={"count": len(rows)})
        annotations = await AnnotationStore.of(self.db).unfinished()
        for annotation in annotations:
            await self.request_annotations(annotation)
        if annotations:
            log.info("resubmitted unfinished annotation requests", extra={"count": len(annotations)})


def make_runner(settings: Settings, topology: Topology, mode: Mode) -> Runner:
    if mode is Mode.dev:
        return MemoryRunner(topology, partitions=settings.topic_partitions,
                            queue_size=settings.bus_queue_size)
    from streams.faust_runner import FaustRunner

    # The API alone only produces: joining the consumer group would rebalance it on every
    # API restart.
    return FaustRunner(topology, settings, consume=mode is not Mode.api)


async def open_runtime(settings: Settings, mode: Mode) -> Runtime:
    """Open storage (migrating it), build the agents and the runner; not started yet."""
    if mode is Mode.dev and settings.bus is not BusKind.memory:
        mode = Mode.combined
    db = Database(settings.clickhouse_url)
    await migrate(db)
    accounts = AccountStore(db)
    sources = SourceCache.from_settings(settings)
    fetch_client = make_client(settings)
    webhook_client = guarded_session(allow_private=settings.webhook_allow_private,
                                     timeout=settings.webhook_timeout)
    context = AgentContext(settings=settings, db=db, accounts=accounts, sources=sources,
                           fetch_client=fetch_client, webhook_client=webhook_client,
                           cpu_gate=asyncio.Semaphore(settings.process_concurrency))
    if mode is Mode.dev:
        context.index = IndexService(settings.index_engine)
    topology = build_topology(context, TopologyOptions(index_in_process=mode is Mode.dev))
    runner = make_runner(settings, topology, mode)
    return Runtime(settings, mode, db, accounts, ImageStore.of(db), sources, context, topology, runner)
