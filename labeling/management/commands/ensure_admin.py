"""`manage.py ensure_admin`: make sure the installation has a first admin account.

If no superuser exists, create `admin` with LOUPE_ADMIN_PASSWORD, or with a generated password that
is printed once (it is never stored in clear anywhere else). If a superuser exists, do nothing, so
the run command can call this on every start.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

ADMIN_USERNAME = "admin"


class Command(BaseCommand):
    help = "Create the `admin` superuser if the installation has no superuser yet."

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        with transaction.atomic():
            if user_model.objects.filter(is_superuser=True).exists():
                return
            if user_model.objects.filter(username=ADMIN_USERNAME).exists():
                # Promoting an existing ordinary account would silently hand it every project;
                # warn instead, and let the run command go on (this is not fatal).
                self.stderr.write(
                    f"No superuser exists, and a user named {ADMIN_USERNAME!r} is not one; "
                    "create a superuser with `manage.py createsuperuser`."
                )
                return
            password = os.environ.get("LOUPE_ADMIN_PASSWORD", "")
            generated = not password
            if generated:
                password = secrets.token_urlsafe(12)
            user_model.objects.create_superuser(
                username=ADMIN_USERNAME, email="", password=password
            )
        if generated:
            self.stdout.write(f"Created admin account: {ADMIN_USERNAME} / {password}")
        else:
            self.stdout.write(
                f"Created admin account: {ADMIN_USERNAME} (password from LOUPE_ADMIN_PASSWORD)"
            )
