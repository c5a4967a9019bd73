"""REST models of annotation requests: what a client sends, and the request resource it gets.

Feature names arrive as plain strings (not the `Feature` enum) so that an
unknown name is answered with the list of valid ones, rather than with
pydantic's generic enum message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from schemas.annotations import Annotations, Feature
from schemas.events import ErrorInfo
from schemas.images import check_http_url


class AnnotationCreate(BaseModel):
    annotations: list[str] = Field(description="Features to find: "
                                   + ", ".join(f"`{f.value}`" for f in Feature) + ".")
    provider: str | None = Field(None, description="`google`, `tesseract` or `local`; default: the "
                                 "server's `IMGKIT_VISION_PROVIDER`.")
    passthrough: Any = Field(None, description="Any JSON; returned as is in the request resource "
                             "and its webhook.")
    webhook_url: str | None = Field(None, description="Where to send the webhook; default: the "
                                    "account's.")

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        return None if value in (None, "") else check_http_url(value, "webhook_url")


class AnnotationRequestResource(BaseModel):
    """One annotation request: its status and, once done, its result or its error."""

    id: str = Field(description="`ann_` KSUID.")
    image_id: str
    status: Literal["pending", "completed", "failed"]
    provider: str
    features: list[Feature]
    cached_features: list[Feature] = Field(default_factory=list, description="Features answered "
                                           "from the result cache (no provider call).")
    created_at: datetime
    updated_at: datetime
    passthrough: Any = None
    annotations: Annotations | None = Field(None, description="The result: the features asked, "
                                            "provider-neutral, with the provider's `raw` answer.")
    error: ErrorInfo | None = None
