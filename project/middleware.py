"""Turns a LoupeError raised by an HTML view into its response (the API has its own handler)."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from project.errors import LoupeError, error_response


class LoupeErrorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, LoupeError):
            response = error_response(request, exception)
            if hasattr(response, "render"):
                response.render()
            return response
        return None
