"""ImgKit's graph, declared once: topic → agent → output topics.

Both runners (in-process bus, Faust over Kafka) take what `build_topology`
returns. Topic names here carry no deployment prefix; the runners add it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agents.annotate.agent import annotate
from agents.annotate.store import AnnotationStore, store_annotations
from agents.context import AgentContext
from agents.process import process_image
from agents.store import ImageStore, store_batch
from agents.webhooks import on_retry, on_stored
from schemas.events import (
    AnnotationCompleted,
    AnnotationRequested,
    AnnotationStored,
    ImageHashes,
    ImageProcessed,
    ImageRequested,
    ImageStored,
    WebhookDelivery,
)
from streams.topology import Agent, Emit, Topic, Topology, each

IMAGES_REQUESTED = Topic("images.requested", ImageRequested)
IMAGES_PROCESSED = Topic("images.processed", ImageProcessed)
IMAGES_STORED = Topic("images.stored", ImageStored)
IMAGES_HASHES = Topic("images.hashes", ImageHashes)
WEBHOOKS_RETRY = Topic("webhooks.retry", WebhookDelivery)
WEBHOOKS_DEAD = Topic("webhooks.dead", WebhookDelivery)
ANNOTATIONS_REQUESTED = Topic("annotations.requested", AnnotationRequested)
ANNOTATIONS_COMPLETED = Topic("annotations.completed", AnnotationCompleted)
ANNOTATIONS_STORED = Topic("annotations.stored", AnnotationStored)

ALL_TOPICS = (IMAGES_REQUESTED, IMAGES_PROCESSED, IMAGES_STORED, IMAGES_HASHES, WEBHOOKS_RETRY,
              WEBHOOKS_DEAD, ANNOTATIONS_REQUESTED, ANNOTATIONS_COMPLETED, ANNOTATIONS_STORED)


WEBHOOKS_IN_FLIGHT = 64
"""Deliveries at once per webhook agent: each waits for its attempt's log row to be stored
(up to ATTEMPT_LOG_SPACING), so this bounds deliveries per second at about 250."""

DOWNLOADS_PER_EXTRACTION = 4
"""Images in flight per extraction thread: downloads overlap with decoding (ctx.cpu_gate)."""


@dataclass(frozen=True)
class TopologyOptions:
    index_in_process: bool = False  # embedded mode: the index consumes hashes in this process


def build_topology(ctx: AgentContext, options: TopologyOptions = TopologyOptions()) -> Topology:
    images = ImageStore.of(ctx.db)
    annotations = AnnotationStore.of(ctx.db)
    topology = Topology(topics=list(ALL_TOPICS))

    async def process(record: ImageRequested) -> Sequence[Emit]:
        return await process_image(ctx, record, IMAGES_PROCESSED, IMAGES_HASHES)

    async def store(records: Sequence[ImageProcessed]) -> Sequence[Emit]:
        return await store_batch(images, records, IMAGES_STORED)

    async def webhook(record: ImageStored) -> Sequence[Emit]:
        return await on_stored(ctx, record, WEBHOOKS_RETRY, WEBHOOKS_DEAD)

    async def webhook_retry(record: WebhookDelivery) -> Sequence[Emit]:
        return await on_retry(ctx, record, WEBHOOKS_RETRY, WEBHOOKS_DEAD)

    async def annotate_one(record: AnnotationRequested) -> Sequence[Emit]:
        return await annotate(ctx, record, ANNOTATIONS_COMPLETED)

    async def store_annotated(records: Sequence[AnnotationCompleted]) -> Sequence[Emit]:
        return await store_annotations(annotations, records, ANNOTATIONS_STORED)

    async def annotation_webhook(record: AnnotationStored) -> Sequence[Emit]:
        return await on_stored(ctx, record, WEBHOOKS_RETRY, WEBHOOKS_DEAD)

    in_flight = DOWNLOADS_PER_EXTRACTION * ctx.settings.process_concurrency
    topology.agent(Agent("process", IMAGES_REQUESTED, each(process, in_flight),
                         outputs=(IMAGES_PROCESSED, IMAGES_HASHES), batch_size=16))
    # No batch_wait for the store: its writes already wait for company in the shared
    # BatchWriters (PIPELINE_SPACING), and a second wait only delayed every webhook.
    topology.agent(Agent("store", IMAGES_PROCESSED, store, outputs=(IMAGES_STORED,),
                         batch_size=500))
    topology.agent(Agent("webhooks", IMAGES_STORED, each(webhook, WEBHOOKS_IN_FLIGHT),
                         outputs=(WEBHOOKS_RETRY, WEBHOOKS_DEAD), batch_size=64))
    topology.agent(Agent("webhooks-retry", WEBHOOKS_RETRY, each(webhook_retry, 64),
                         outputs=(WEBHOOKS_RETRY, WEBHOOKS_DEAD), batch_size=64))
    topology.agent(Agent("annotate", ANNOTATIONS_REQUESTED,
                         each(annotate_one, ctx.settings.annotate_concurrency),
                         outputs=(ANNOTATIONS_COMPLETED,), batch_size=16))
    topology.agent(Agent("annotations-store", ANNOTATIONS_COMPLETED, store_annotated,
                         outputs=(ANNOTATIONS_STORED,), batch_size=500, batch_wait=0.05))
    topology.agent(Agent("annotations-webhooks", ANNOTATIONS_STORED,
                         each(annotation_webhook, WEBHOOKS_IN_FLIGHT),
                         outputs=(WEBHOOKS_RETRY, WEBHOOKS_DEAD), batch_size=64))
    if options.index_in_process and ctx.index is not None:
        sink = ctx.index

        async def index(records: Sequence[ImageHashes]) -> Sequence[Emit]:
            for record in records:
                await sink.apply(record)
            return []

        topology.agent(Agent("index", IMAGES_HASHES, index, batch_size=1000, batch_wait=0.01))
    return topology
