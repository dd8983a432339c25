"""Property-based tests of the tag and region services: any sequence of edits keeps the rules.

Hypothesis draws sequences of operations (set tags, toggle, bulk add/remove, undo; set boxes
with coordinates anywhere, including outside the image and non-finite) and after every step
checks the invariants the services promise:
- a multiclass image has at most one tag; Negative is never beside another tag;
- `is_tagged` says whether the image has labels;
- box coordinates stay in 0..1 and a box ends inside the image;
- an accepted write bumps the version of each image it wrote by exactly one, a refused write
  (LoupeError) changes nothing: no version, no tag, no box.
Each example runs in a savepoint that is rolled back, so it starts from the same fresh images.
"""

from __future__ import annotations

import math

import pytest
from django.db import transaction
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from labeling.models import Image, ImageTag, Project, Region, Role, Tag
from labeling.services.regions import EDGE_TOLERANCE_PX, set_image_regions
from labeling.services.tagging import (
    TagChange,
    add_tags_to_images,
    remove_tags_from_images,
    restore_image_tags,
    set_image_tags,
    toggle_image_tag,
)
from project.errors import LoupeError
from tests.factories import ImageFactory, MembershipFactory, ProjectFactory, TagFactory

pytestmark = pytest.mark.django_db

PROPERTY_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
IMAGES = 3
# Tag indexes 0..2 are regular tags, 3 is the Negative tag.
TAGS = 4
NEGATIVE = 3


class _Rollback(Exception):
    """Raised at the end of an example to roll its savepoint back."""


def run_rolled_back(check) -> None:
    """Run `check()` in a savepoint that is always rolled back (a fresh start per example)."""
    try:
        with transaction.atomic():
            check()
            raise _Rollback
    except _Rollback:
        pass


# --- classification ------------------------------------------------------------------------


@pytest.fixture(params=[Project.Kind.MULTICLASS, Project.Kind.MULTILABEL])
def labeled(request, db):
    project = ProjectFactory(kind=request.param)
    annotator = MembershipFactory(project=project, role=Role.ANNOTATOR).user
    tags = [TagFactory(project=project, name=f"tag{n}") for n in range(TAGS - 1)]
    tags.append(TagFactory(project=project, name="Negative", kind=Tag.Kind.NEGATIVE))
    images = [ImageFactory(project=project) for _ in range(IMAGES)]
    return project, annotator, tags, [image.pk for image in images]


image_index = st.integers(0, IMAGES - 1)
tag_index = st.integers(0, TAGS - 1)
# "current": the version the editor saw; "stale": an older or newer one; None: no check.
version_choice = st.sampled_from(["current", "stale", None])
tag_operation = st.one_of(
    st.tuples(st.just("set"), image_index, st.lists(tag_index, max_size=3), version_choice),
    st.tuples(st.just("toggle"), image_index, tag_index, version_choice),
    st.tuples(st.just("add"), st.lists(image_index, max_size=3), st.lists(tag_index, max_size=2)),
    st.tuples(
        st.just("remove"), st.lists(image_index, max_size=3), st.lists(tag_index, max_size=2)
    ),
    st.tuples(st.just("undo"), st.booleans()),
)


def _snapshot(image_ids: list[int]) -> dict[int, tuple[int, frozenset[int]]]:
    """Each image's (version, tag ids)."""
    result = {}
    for image in Image.objects.filter(pk__in=image_ids):
        tag_ids = frozenset(ImageTag.objects.filter(image=image).values_list("tag_id", flat=True))
        result[image.pk] = (image.version, tag_ids)
    return result


def _check_tag_invariants(project: Project, negative: Tag, image_ids: list[int]) -> None:
    for image in Image.objects.filter(pk__in=image_ids):
        tag_ids = set(ImageTag.objects.filter(image=image).values_list("tag_id", flat=True))
        if project.kind == Project.Kind.MULTICLASS:
            assert len(tag_ids) <= 1, f"multiclass image {image.pk} has tags {tag_ids}"
        if negative.pk in tag_ids:
            assert tag_ids == {negative.pk}, f"Negative beside other tags on {image.pk}"
        assert image.is_tagged == bool(tag_ids)


def _version(choice: str | None, image_id: int) -> int | None:
    if choice is None:
        return None
    current = Image.objects.get(pk=image_id).version
    return current if choice == "current" else current - 1


def _apply_tag_operation(op, *, project, by, tags, image_ids, last_change):
    """Run one operation; returns (image ids it claims to have written, the TagChange if any)."""
    kind = op[0]
    if kind == "set":
        _, i, tag_idx, choice = op
        image = Image.objects.get(pk=image_ids[i])
        version = _version(choice, image.pk)
        set_image_tags(image=image, tags=[tags[t] for t in tag_idx], by=by, version=version)
        return [image.pk], None
    if kind == "toggle":
        _, i, t, choice = op
        image = Image.objects.get(pk=image_ids[i])
        change = toggle_image_tag(
            image=image, tag=tags[t], by=by, version=_version(choice, image.pk)
        )
        return [image.pk], change
    if kind in ("add", "remove"):
        _, image_idx, tag_idx = op
        chosen = sorted({image_ids[i] for i in image_idx})
        service = add_tags_to_images if kind == "add" else remove_tags_from_images
        selected = [tags[t] for t in tag_idx]
        count = service(project=project, image_ids=chosen, tags=selected, by=by)
        # Bulk add of no tags is a no-op; otherwise every listed image is written.
        written = [] if (kind == "add" and not selected) else chosen
        assert count == len(written)
        return written, None
    # Undo the last single-image change, with the version it produced (or a stale one).
    _, stale = op
    if last_change is None:
        return [], None
    version = last_change.image.version - (1 if stale else 0)
    image = Image.objects.get(pk=last_change.image.pk)
    change = restore_image_tags(
        image=image, tag_ids=[t.pk for t in last_change.before], by=by, version=version
    )
    return [image.pk], change


@PROPERTY_SETTINGS
@given(operations=st.lists(tag_operation, min_size=1, max_size=12))
def test_any_sequence_of_tag_edits_keeps_the_rules_and_versions(labeled, operations):
    project, by, tags, image_ids = labeled

    def check() -> None:
        last_change: TagChange | None = None
        for op in operations:
            before = _snapshot(image_ids)
            try:
                written, change = _apply_tag_operation(
                    op,
                    project=project,
                    by=by,
                    tags=tags,
                    image_ids=image_ids,
                    last_change=last_change,
                )
            except LoupeError as err:
                event(f"{op[0]} refused: {err.code}")
                assert _snapshot(image_ids) == before, f"refused {op} changed something"
                continue
            event(f"{op[0]} accepted")
            after = _snapshot(image_ids)
            for image_id in image_ids:
                expected = before[image_id][0] + (1 if image_id in written else 0)
                assert after[image_id][0] == expected, f"{op}: version of {image_id}"
            if change is not None:
                assert change.image.version == after[change.image.pk][0]
                assert {t.pk for t in change.after} == after[change.image.pk][1]
                last_change = change
            _check_tag_invariants(project, tags[NEGATIVE], image_ids)

    run_rolled_back(check)


@PROPERTY_SETTINGS
@given(tag_idx=st.lists(tag_index, min_size=1, max_size=3))
def test_a_refused_tag_set_names_the_rule_it_broke(labeled, tag_idx):
    project, by, tags, image_ids = labeled
    chosen = [tags[t] for t in tag_idx]
    ids = [t.pk for t in chosen]
    breaks_rule = (
        len(set(ids)) != len(ids)
        or (project.kind == Project.Kind.MULTICLASS and len(ids) > 1)
        or (len(ids) > 1 and tags[NEGATIVE].pk in ids)
    )

    def check() -> None:
        image = Image.objects.get(pk=image_ids[0])
        try:
            set_image_tags(image=image, tags=chosen, by=by, version=image.version)
        except LoupeError as err:
            assert breaks_rule, f"{ids} refused: {err.message}"
            assert err.message.endswith(".")
        else:
            assert not breaks_rule, f"{ids} accepted"

    run_rolled_back(check)


# --- regions -------------------------------------------------------------------------------


@pytest.fixture
def detection(db):
    project = ProjectFactory(kind=Project.Kind.DETECTION)
    annotator = MembershipFactory(project=project, role=Role.ANNOTATOR).user
    tags = [TagFactory(project=project, name=f"thing{n}") for n in range(2)]
    tags.append(TagFactory(project=project, name="Negative", kind=Tag.Kind.NEGATIVE))
    return project, annotator, tags


coordinate = st.one_of(
    st.floats(-0.5, 1.5),
    st.floats(0, 1),
    st.sampled_from([0.0, 1.0, -1e-4, 1 + 1e-4, 1e-9]),
    st.floats(allow_nan=True, allow_infinity=True),
)
wild_box = st.tuples(st.integers(0, 2), coordinate, coordinate, coordinate, coordinate)


@st.composite
def fitting_box(draw):
    """A box of a regular tag inside the image, or overshooting an edge by up to 1e-4."""
    left, top = draw(st.floats(0, 0.75)), draw(st.floats(0, 0.75))
    width, height = draw(st.floats(0.2, 1 - left)), draw(st.floats(0.2, 1 - top))
    overshoot = draw(st.sampled_from([0.0, 0.0, 1e-4, -1e-4]))
    return (draw(st.integers(0, 1)), left + overshoot, top, width, height)


box = st.one_of(fitting_box(), fitting_box(), wild_box)
region_operation = st.tuples(
    st.lists(box, max_size=4),
    version_choice,
    st.sampled_from([None, None, True, False]),
)


def _regions_of(image: Image) -> list[tuple[int, float, float, float, float]]:
    return list(
        Region.objects.filter(image=image).values_list("tag_id", "left", "top", "width", "height")
    )


def _within_tolerance(spec, width_px: int, height_px: int) -> bool:
    _, left, top, width, height = spec
    if not all(math.isfinite(v) for v in (left, top, width, height)) or width < 0 or height < 0:
        return False
    tol_x, tol_y = EDGE_TOLERANCE_PX / width_px, EDGE_TOLERANCE_PX / height_px
    return (
        left >= -tol_x and top >= -tol_y and left + width <= 1 + tol_x and top + height <= 1 + tol_y
    )


@PROPERTY_SETTINGS
@given(
    size=st.tuples(st.integers(5, 5000), st.integers(5, 5000)),
    operations=st.lists(region_operation, min_size=1, max_size=6),
)
def test_any_sequence_of_box_edits_keeps_boxes_inside_the_image(detection, size, operations):
    project, by, tags = detection
    width_px, height_px = size

    def check() -> None:
        image = ImageFactory(project=project, width=width_px, height=height_px)
        for boxes, choice, no_objects in operations:
            specs = [(tags[t], left, top, w, h) for t, left, top, w, h in boxes]
            before = (image.version, _regions_of(image), image.is_tagged)
            version = None if choice is None else image.version - (0 if choice == "current" else 1)
            try:
                set_image_regions(
                    image=image, regions=specs, by=by, version=version, no_objects=no_objects
                )
            except LoupeError as err:
                event(f"boxes refused: {err.code}")
                image.refresh_from_db()
                assert (image.version, _regions_of(image), image.is_tagged) == before
                assert err.message.endswith(".")
                continue
            event(f"{len(specs)} boxes accepted")
            image.refresh_from_db()
            assert image.version == before[0] + 1
            assert choice != "stale"
            assert all(tag.kind == Tag.Kind.REGULAR for tag, *_ in specs)
            assert all(_within_tolerance(spec, width_px, height_px) for spec in specs)
            stored = _regions_of(image)
            assert len(stored) == len(specs)
            for _, left, top, w, h in stored:
                assert 0 <= left <= 1 and 0 <= top <= 1 and 0 < w <= 1 and 0 < h <= 1
                assert left + w <= 1 + 1e-9 and top + h <= 1 + 1e-9
                assert w * width_px >= 1 - 1e-9 and h * height_px >= 1 - 1e-9
            marked = ImageTag.objects.filter(image=image, tag__kind=Tag.Kind.NEGATIVE).exists()
            assert not (stored and marked), "a boxed image is marked No objects"
            assert image.is_tagged == bool(stored or marked)

    run_rolled_back(check)
