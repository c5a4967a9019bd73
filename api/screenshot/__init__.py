"""The screenshot and social-card service (`imgkit screenshot`): one warm headless Chromium.

Public API: `create_screenshot_app(settings)` (the ASGI app), `serve(settings)` (run it
with uvicorn on `screenshot_host:screenshot_port`), and `ScreenshotService` (the render
operations without HTTP).
"""

from api.screenshot.app import ScreenshotService, create_screenshot_app, serve

__all__ = ["ScreenshotService", "create_screenshot_app", "serve"]
