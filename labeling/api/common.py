"""Pieces every API module shares: the error answers each endpoint documents, keyset paging."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.request import Request

from labeling.serializers import ErrorSerializer
from project.hosts import absolute_url
from project.ids import IdField


def errors(*statuses: int, in_project: bool = True) -> dict[int, OpenApiResponse]:
    """The documented error answers of an endpoint: 401, 404 inside a project, and `statuses`.

    Every project endpoint answers 401 to an anonymous caller and 404 to a non-member (so ids
    don't leak); writes add 403 (role too low), 400 (malformed body) or 409/422 (rules).
    """
    described = {
        400: "The request body or query is malformed.",
        401: "Not authenticated: send `Authorization: Token <key>` or a session cookie.",
        403: "Your role in this project is too low for this.",
        404: "No such project (or you are not a member of it), or no such object in it.",
        409: "Someone else changed the image since you read it; reload and retry.",
        413: "The image is larger than the configured limit (bytes or pixels).",
        422: "The request breaks a rule (labels, names, roles); the message says which.",
    }
    return {
        code: OpenApiResponse(ErrorSerializer, description=described[code])
        for code in sorted({401, *statuses} | ({404} if in_project else set()))
    }


# --- Keyset paging, as the image list pages -----------------------------------------------------

MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50


class PageQuerySerializer(serializers.Serializer):
    """`after` (the previous page's `next_cursor`) and `page_size`: keyset paging by id."""

    after = IdField(
        required=False,
        help_text="Cursor: the page after this id (the `next_cursor` of the previous page).",
    )
    page_size = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE
    )

    class Meta:
        ref_name = "PageQuery"


def page_serializer(name: str, item: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """The page shape every keyset-paged list answers: count, next_cursor, next, results."""

    class Page(serializers.Serializer):
        count = serializers.IntegerField(help_text="Items matching the query.")
        next_cursor = serializers.IntegerField(
            allow_null=True, help_text="Pass as `after` for the next page."
        )
        next = serializers.CharField(allow_null=True, help_text="URL of the next page.")
        results = item(many=True)

        class Meta:
            ref_name = name

    Page.__name__ = name
    return Page


@dataclass(frozen=True)
class KeysetPage:
    items: list[Any]
    next_cursor: int | None


def keyset_page(rows: QuerySet[Any], *, after: int | None, size: int) -> KeysetPage:
    """One page of `rows` newest first (falling id), after the id `after`; one query."""
    if after is not None:
        rows = rows.filter(pk__lt=after)
    items = list(rows.order_by("-pk")[: size + 1])
    more = len(items) > size
    items = items[:size]
    return KeysetPage(items, items[-1].pk if more and items else None)


def paged_body(request: Request, page: KeysetPage, *, count: int, results: Any) -> dict[str, Any]:
    """The JSON of a page: `next` is this request's URL with `after` set to the cursor."""
    next_url = next_page_url(request, page.next_cursor)
    return {"count": count, "next_cursor": page.next_cursor, "next": next_url, "results": results}


def next_page_url(request: Request, cursor: int | str | None) -> str | None:
    """This request's URL with `after` set to `cursor` (None: there is no next page)."""
    if cursor is None:
        return None
    query = request.query_params.copy()
    query["after"] = str(cursor)
    return absolute_url(request, f"{request.path}?{query.urlencode()}")
