"""Step plan: output and intermediate sizes per fit, and the output limit."""

from __future__ import annotations

import pytest

from imaging.render.options import Fit
from imaging.render.plan import plan, plan_size
from imgkit.errors import BadRequest
from tests.unit._render_images import context

SRC = (1000, 500)


@pytest.mark.parametrize(("box", "fit", "resized", "final"), [
    ((200, 200), Fit.cover, (400, 200), (200, 200)),
    ((200, 200), Fit.contain, (200, 100), (200, 200)),
    ((200, 200), Fit.fill, (200, 200), (200, 200)),
    ((200, 200), Fit.inside, (200, 100), (200, 100)),
    ((4000, 4000), Fit.inside, (4000, 2000), (4000, 2000)),  # enlarges, like sharp
    ((300, None), Fit.cover, (300, 150), (300, 150)),
    ((None, 100), Fit.fill, (200, 100), (200, 100)),
    ((None, None), Fit.cover, SRC, SRC),
])
def test_plan_size(box: tuple[int | None, int | None], fit: Fit, resized: tuple[int, int],
                   final: tuple[int, int]) -> None:
    assert plan_size(SRC, box, fit) == (resized, final)


def test_plan_uses_dpr_and_fills_the_context() -> None:
    ctx = context(w="100", h="100", dpr="2")
    ctx.source_width, ctx.source_height = SRC
    plan(ctx)
    assert (ctx.resize_width, ctx.resize_height, ctx.target_width, ctx.target_height) == (400, 200, 200, 200)


def test_output_over_the_limit_is_refused() -> None:
    ctx = context(w="5000", h="5000")
    ctx.source_width, ctx.source_height = SRC
    with pytest.raises(BadRequest, match="over the limit") as info:
        plan(ctx)
    assert (info.value.status, info.value.code) == (422, "output_too_large")
