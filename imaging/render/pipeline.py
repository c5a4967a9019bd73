"""The thumbnail renderer: a list of named steps over one RenderContext, and its runner.

Each step is a function `step(ctx) -> None` in a file named for what it does;
adding a step is adding a file and a line in STEPS. The runner checks the
deadline between steps, so a request whose client has long given up stops
early instead of holding a render slot. libvips is lazy: most pixels are
decoded, resized and converted while `encode` pulls them through the pipeline,
so the early steps are cheap and a timeout before `encode` saves almost all the
work.

`render` is the public entry for async code (the API): it runs the CPU-bound
work in a thread under a semaphore of `settings.render_concurrency`, so a burst
of requests queues instead of oversubscribing the cores; queueing counts
against `settings.render_timeout`.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import pyvips

from imaging.render.choose_format import choose_format
from imaging.render.colour import colour
from imaging.render.context import RenderContext
from imaging.render.crop import crop
from imaging.render.decoded import DecodedCache
from imaging.render.encode import encode
from imaging.render.errors import ImageError, RenderTimeout
from imaging.render.finalize import finalize
from imaging.render.load import scale_on_load
from imaging.render.options import CONTENT_TYPES, RenderOptions
from imaging.render.orient import orient
from imaging.render.plan import plan
from imaging.render.probe import probe
from imaging.render.resize import resize
from imgkit.settings import Settings

Step = Callable[[RenderContext], None]

STEPS: list[Step] = [
    probe,  # header only: format allowed? too many pixels? orientation, alpha, profile
    plan,  # output and intermediate sizes; refuse oversized outputs
    choose_format,  # resolve format=auto for this image and client
    scale_on_load,  # decode at the smallest sufficient scale (JPEG/WebP shrink-on-load)
    orient,  # apply the EXIF orientation
    resize,  # scale to the planned size
    colour,  # embedded ICC profile -> sRGB, 8 bits
    crop,  # cover: cut by gravity; contain: pad with the background
    finalize,  # strip metadata but ICC, flatten alpha for JPEG
    encode,  # write the bytes
]


@dataclass(frozen=True)
class Rendered:
    """A finished thumbnail."""

    data: bytes
    content_type: str
    width: int
    height: int


def run_steps(ctx: RenderContext, steps: list[Step], deadline: float) -> RenderContext:
    """Run `steps` in order; stop with RenderTimeout once `deadline` (time.monotonic) has passed."""
    for step in steps:
        if time.monotonic() > deadline:
            raise RenderTimeout(f"the render ran out of time before step {step.__name__}",
                                step=step.__name__)
        try:
            step(ctx)
        except pyvips.Error as exc:  # libvips failing on pixels means a corrupt or hostile source
            detail = (exc.detail or exc.message or "").strip().splitlines()
            raise ImageError(f"the image could not be rendered ({step.__name__}): "
                             f"{detail[0] if detail else 'libvips error'}", step=step.__name__) from None
    return ctx


SourceBytes = bytes | Callable[[], bytes]
"""The encoded source, or a function reading it (called at most once, only if a step needs it)."""


def render_sync(source: SourceBytes, options: RenderOptions, settings: Settings,
                deadline: float | None = None, *, source_key: str = "",
                decoded: DecodedCache | None = None) -> Rendered:
    """Render in the calling thread (for workers and tests); `deadline` is a time.monotonic value.

    With `decoded` and the source's sha256 as `source_key`, renders of one source share
    its header and decoded levels (imaging/render/decoded.py); the output is the same.
    """
    data, reader = (b"", source) if callable(source) else (source, None)
    if not data and reader is None:
        raise ImageError("the source is empty")
    ctx = RenderContext(source=data, options=options, max_pixels=settings.max_pixels,
                        max_output_pixels=settings.render_max_output_pixels, source_key=source_key,
                        decoded=decoded, read_source=reader)
    run_steps(ctx, STEPS, deadline if deadline is not None else time.monotonic() + settings.render_timeout)
    image = ctx.current()
    return Rendered(data=ctx.data, content_type=CONTENT_TYPES[ctx.output_format],
                    width=image.width, height=image.height)


# One semaphore per event loop: an asyncio.Semaphore belongs to the loop it first waits in.
_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary())


def _gate(size: int) -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    gate = _gates.get(loop)
    if gate is None:
        gate = _gates[loop] = asyncio.Semaphore(size)
    return gate


async def render(source: SourceBytes, options: RenderOptions, settings: Settings, *,
                 source_key: str = "", decoded: DecodedCache | None = None) -> Rendered:
    """Render a thumbnail off the event loop, at most `settings.render_concurrency` at a time."""
    deadline = time.monotonic() + settings.render_timeout
    gate = _gate(settings.render_concurrency)
    try:
        async with asyncio.timeout(settings.render_timeout):
            await gate.acquire()
    except TimeoutError:
        raise RenderTimeout("too many renders are queued; try again shortly") from None
    job = asyncio.ensure_future(asyncio.to_thread(
        partial(render_sync, source, options, settings, deadline, source_key=source_key, decoded=decoded)))
    job.add_done_callback(lambda _: gate.release())  # a thread cannot be interrupted: the slot is
    return await asyncio.shield(job)  # held until it ends, even when the request is cancelled
