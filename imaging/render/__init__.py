"""Signed on-the-fly thumbnails: options, the step pipeline and its public entry `render`."""

from imaging.render.options import Fit, Gravity, OutputFormat, RenderOptions, negotiate, parse_options
from imaging.render.pipeline import STEPS, Rendered, render, render_sync

__all__ = ["STEPS", "Fit", "Gravity", "OutputFormat", "RenderOptions", "Rendered", "negotiate",
           "parse_options", "render", "render_sync"]
