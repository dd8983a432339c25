"""`manage.py create_api_key USERNAME --kind training|prediction [--name NAME]`: a new API key
for scripts and deployments, the same key the "API keys" page makes.

The key is printed alone on the last line of the output, so a script can take it with
`| tail -n 1`; it is not stored in clear anywhere and cannot be shown again.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from labeling.models import ApiKey
from labeling.services.api_keys import create_api_key, find_user
from project.errors import LoupeError


class Command(BaseCommand):
    help = "Create a training or prediction API key for USERNAME and print it (last line)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--kind", required=True, choices=list(ApiKey.Kind.values))
        parser.add_argument("--name", default="", help="What the key is for (default: the kind).")

    def handle(self, *args: Any, **options: Any) -> None:
        kind = options["kind"]
        try:
            user = find_user(options["username"])
            issued = create_api_key(
                user=user, kind=kind, name=options["name"] or f"{kind} key (command line)"
            )
        except LoupeError as err:
            raise CommandError(err.message) from None
        self.stdout.write(issued.secret)
