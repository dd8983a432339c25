"""Image sets another app computes, walked by labeling's gallery, tagging view and box editor.

labeling imports no other Loupe app (import-linter checks it), yet a mispredicted image opened
from a performance page must keep its context: the editor shows what the iteration predicted
beside the true labels, Previous/Next walk the images that iteration got wrong at the page's
threshold, "back" returns to the page, and the gallery can show the whole set. Only training can
compute that set (from its stored out-of-fold or held-out scores). So the dependency points the
allowed way round: labeling defines what a set is (this module) and asks for one by the query
string; training registers its provider in `TrainingConfig.ready()` under the query key it owns
(`?mispredicted=<iteration id>&threshold=0.50`). Without training, nothing is registered and
the key is ignored.

Why not `labeling.gallery_extensions`' filters: those are fixed keys (`?filter=suggested`) that
narrow a queryset; a set here takes parameters (which iteration, which thresholds), has an order
of its own, a page to go back to and, per image, what a model said about it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

    from labeling.models import Project


@dataclass(frozen=True)
class PredictedTag:
    name: str
    probability: float
    is_predicted: bool  # at the set's threshold, by the rule its performance page uses
    is_true: bool  # among the labels the model was scored against


@dataclass(frozen=True)
class PredictedBox:
    name: str
    probability: float
    left: float  # fractions of the image, Custom Vision's convention
    top: float
    width: float
    height: float


@dataclass(frozen=True)
class ImagePrediction:
    """What a model said about one image of a set, and the labels it was scored against."""

    source: str  # "Iteration 3"
    threshold: float
    summary: str  # "predicted: cat · true: dog", "1 missed · 2 wrong"
    true_labels: list[str]  # as the model saw them (they may have been fixed since)
    tags: list[PredictedTag] = field(default_factory=list)  # classification, most likely first
    boxes: list[PredictedBox] = field(default_factory=list)  # detection, at the threshold


@dataclass(frozen=True)
class ImageSet:
    label: str  # "Mispredicted by Iteration 3 at threshold 0.50"
    image_ids: Sequence[int]  # in the order Previous/Next walk them
    params: dict[str, str]  # the query parameters naming this set; every link carries them
    back_url: str  # where "back" goes: the page the set came from
    back_label: str
    prediction: Callable[[int], ImagePrediction | None]

    def neighbours(self, image_id: int) -> tuple[int | None, int | None]:
        """The ids before and after `image_id` in the set; (None, None) for an image not in it."""
        try:
            at = list(self.image_ids).index(image_id)
        except ValueError:
            return None, None
        before = self.image_ids[at - 1] if at > 0 else None
        after = self.image_ids[at + 1] if at + 1 < len(self.image_ids) else None
        return before, after

    def position(self, image_id: int) -> str:
        """ "image 3 of 12", or "" for an image not in the set."""
        ids = list(self.image_ids)
        return f"image {ids.index(image_id) + 1} of {len(ids)}" if image_id in ids else ""


# (user, project the user may see, the request's query) -> the set, or None to ignore the key.
# A provider raises LoupeError (NotFound) for a set that names something not in the project.
Provider = Callable[["AbstractBaseUser", "Project", Mapping[str, str]], ImageSet | None]

_providers: dict[str, Provider] = {}


def register_image_set(key: str, provider: Provider) -> None:
    """Answer `?<key>=…` with `provider` (registering a key again replaces it: `ready()` may run
    twice in tests)."""
    _providers[key] = provider


def image_set_for(
    user: AbstractBaseUser, project: Project, query: Mapping[str, str]
) -> ImageSet | None:
    """The set the query names, if a registered key is in it."""
    for key, provider in _providers.items():
        if query.get(key):
            return provider(user, project, query)
    return None
