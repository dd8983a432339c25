"""Pieces every API module shares: the error answers each endpoint documents."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse

from labeling.serializers import ErrorSerializer


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
        422: "The request breaks a rule (labels, names, roles); the message says which.",
    }
    return {
        code: OpenApiResponse(ErrorSerializer, description=described[code])
        for code in sorted({401, *statuses} | ({404} if in_project else set()))
    }
