"""The provider-neutral result of annotating an image (labels, text, safe search...).

Every provider (Google Vision, tesseract, ImgKit's own `local` one) answers with
this one shape, so the API, storage and webhooks never branch on the provider.
Conventions, the same for every field:

- a feature that was *not requested* (or that the provider does not offer) is
  `None`; a feature that was requested and found nothing is an empty list or an
  object with empty lists, so a client can tell "no labels" from "not asked";
- scores and confidences are 0..1; pixel coordinates are integers from the
  top-left corner of the image as sent; normalized coordinates are 0..1;
- `raw` keeps the provider's own answer beside the mapping, so nothing the
  provider said is lost if the neutral shape has no field for it yet.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Feature(StrEnum):
    """What a client can ask a provider to find in an image."""

    labels = "labels"
    landmarks = "landmarks"
    properties = "properties"
    text = "text"
    web_entities = "web_entities"
    safe_search = "safe_search"
    faces = "faces"
    objects = "objects"


class Likelihood(StrEnum):
    """How likely a property holds, in Google Vision's five buckets (plus unknown)."""

    UNKNOWN = "UNKNOWN"
    VERY_UNLIKELY = "VERY_UNLIKELY"
    UNLIKELY = "UNLIKELY"
    POSSIBLE = "POSSIBLE"
    LIKELY = "LIKELY"
    VERY_LIKELY = "VERY_LIKELY"


class _Model(BaseModel):
    # Unknown keys are ignored (pydantic's default), not refused: fields are only ever added,
    # and a consumer still on the previous release must read a newer producer's records.
    model_config = ConfigDict(extra="ignore")


class Vertex(_Model):
    """A corner of a bounding polygon, in pixels of the image as sent."""

    x: int = Field(default=0, description="Pixels from the left edge.")
    y: int = Field(default=0, description="Pixels from the top edge.")


class NormalizedVertex(_Model):
    """A corner of a bounding polygon, as a fraction of the image's width and height."""

    x: float = Field(default=0.0, description="Fraction of the width from the left edge, 0..1.")
    y: float = Field(default=0.0, description="Fraction of the height from the top edge, 0..1.")


class Label(_Model):
    """Something the image shows or is about ("Dog", "Beach")."""

    description: str = Field(description="The label, in English.")
    score: float = Field(description="Confidence that the label applies, 0..1.")
    topicality: float | None = Field(default=None, description="How central the label is to the image, "
                                     "0..1 (Google only).")
    mid: str | None = Field(default=None, description="Knowledge Graph entity id (`/m/0bt9lr`), when known.")


class Landmark(_Model):
    """A known place the image shows ("Eiffel Tower")."""

    description: str = Field(description="Name of the landmark.")
    score: float = Field(description="Confidence, 0..1.")
    latitude: float | None = Field(default=None, description="Latitude of the landmark in degrees, "
                                   "when known.")
    longitude: float | None = Field(default=None, description="Longitude of the landmark in degrees, "
                                    "when known.")
    mid: str | None = Field(default=None, description="Knowledge Graph entity id, when known.")


class TextWord(_Model):
    """One word found by OCR."""

    text: str = Field(description="The word.")
    confidence: float | None = Field(default=None, description="OCR confidence, 0..1, when the engine "
                                     "gives one.")
    bounding_box: list[Vertex] = Field(default_factory=list, description="Corners of the word, "
                                       "clockwise from the top-left.")


class TextBlock(_Model):
    """A block of text found by OCR: a paragraph (Google) or a line (tesseract)."""

    text: str = Field(description="The block's text; words separated by spaces, lines by newlines.")
    confidence: float | None = Field(default=None, description="OCR confidence for the block, 0..1, when "
                                     "the engine gives one.")
    bounding_box: list[Vertex] = Field(default_factory=list, description="Corners of the block, "
                                       "clockwise from the top-left.")
    words: list[TextWord] = Field(default_factory=list, description="The block's words with "
                                  "their own boxes, when the engine gives them.")


class TextAnnotation(_Model):
    """Text found in the image (OCR)."""

    full_text: str = Field(default="", description="All the text, in reading order; empty if none.")
    blocks: list[TextBlock] = Field(default_factory=list, description="The text split into "
                                    "blocks with positions.")


class SafeSearch(_Model):
    """How likely the image is to be unsuitable for some audiences."""

    adult: Likelihood = Field(default=Likelihood.UNKNOWN, description="Adult content.")
    spoof: Likelihood = Field(default=Likelihood.UNKNOWN, description="A modified version of a known image "
                              "made to look funny or offensive.")
    medical: Likelihood = Field(default=Likelihood.UNKNOWN, description="Medical content.")
    violence: Likelihood = Field(default=Likelihood.UNKNOWN, description="Violent content.")
    racy: Likelihood = Field(default=Likelihood.UNKNOWN, description="Racy content (suggestive clothing, "
                             "poses, close-ups of body parts).")


class DominantColour(_Model):
    """One of the image's main colours."""

    hex: str = Field(description="The colour as `#rrggbb`.", pattern=r"^#[0-9a-f]{6}$")
    score: float = Field(description="How dominant the colour is, 0..1 (for `local`, equal to "
                         "`pixel_fraction`; Google weighs in saliency).")
    pixel_fraction: float = Field(description="Fraction of the image's pixels closest to it, 0..1.")


class Properties(_Model):
    """Image-wide properties."""

    dominant_colours: list[DominantColour] = Field(default_factory=list, description="Main colours, "
                                                   "most dominant first.")


class WebEntity(_Model):
    """An entity the web associates with the image."""

    entity_id: str = Field(default="", description="Knowledge Graph entity id, when there is one.")
    description: str = Field(default="", description="The entity's name.")
    score: float = Field(default=0.0, description="Relevance (not normalized: may exceed 1).")


class WebDetection(_Model):
    """What the web knows about the image: entities, and where it or similar ones appear."""

    entities: list[WebEntity] = Field(default_factory=list, description="Entities, most "
                                      "relevant first.")
    best_guess_labels: list[str] = Field(default_factory=list, description="The provider's best "
                                         "guesses of what the image is.")
    full_matching_image_urls: list[str] = Field(default_factory=list, description="Copies of the "
                                                "image found on the web.")
    partial_matching_image_urls: list[str] = Field(default_factory=list, description="Crops or "
                                                   "edits of the image found on the web.")
    visually_similar_image_urls: list[str] = Field(default_factory=list, description="Images that "
                                                   "look similar.")
    pages_with_matching_images: list[str] = Field(default_factory=list, description="URLs of pages "
                                                  "that show the image.")


class Face(_Model):
    """A human face and the emotions it likely shows."""

    bounding_box: list[Vertex] = Field(default_factory=list, description="Corners of the face, "
                                       "clockwise from the top-left.")
    detection_confidence: float = Field(default=0.0, description="Confidence that this is a face, 0..1.")
    joy: Likelihood = Field(default=Likelihood.UNKNOWN, description="Joy.")
    sorrow: Likelihood = Field(default=Likelihood.UNKNOWN, description="Sorrow.")
    anger: Likelihood = Field(default=Likelihood.UNKNOWN, description="Anger.")
    surprise: Likelihood = Field(default=Likelihood.UNKNOWN, description="Surprise.")


class LocalizedObject(_Model):
    """An object and where it is ("Bicycle" in the lower left)."""

    name: str = Field(description="What the object is, in English.")
    score: float = Field(description="Confidence, 0..1.")
    mid: str | None = Field(default=None, description="Knowledge Graph entity id, when known.")
    bounding_poly: list[NormalizedVertex] = Field(default_factory=list, description="Corners of the "
                                                  "object, normalized to 0..1, clockwise from the "
                                                  "top-left.")


class Annotations(_Model):
    """Everything one provider found in one image. Unrequested features are `None`."""

    provider: str = Field(description="The provider that answered: `google`, `tesseract`, `local`.")
    labels: list[Label] | None = Field(default=None, description="What the image shows, most "
                                       "confident first.")
    landmarks: list[Landmark] | None = Field(default=None, description="Known places the image shows.")
    text: TextAnnotation | None = Field(default=None, description="Text in the image (OCR).")
    safe_search: SafeSearch | None = Field(default=None, description="Likelihood of unsuitable content.")
    properties: Properties | None = Field(default=None, description="Image-wide properties "
                                          "(dominant colours).")
    web_entities: WebDetection | None = Field(default=None, description="What the web knows about the image.")
    faces: list[Face] | None = Field(default=None, description="Human faces.")
    objects: list[LocalizedObject] | None = Field(default=None, description="Objects with their positions.")
    raw: dict[str, Any] = Field(default_factory=dict, description="The provider's own answer, "
                                "unchanged (Google: the REST JSON of `AnnotateImageResponse`).")

    def features(self) -> set[Feature]:
        """The features this result answers (those that are not `None`)."""
        return {feature for feature in Feature if getattr(self, feature.value) is not None}
