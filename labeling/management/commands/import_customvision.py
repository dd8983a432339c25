"""`manage.py import_customvision --endpoint URL --training-key KEY --project ID [--user NAME]`:
copy a whole Custom Vision project into a new Loupe project, in the foreground, with progress.

Run it again after an interruption (Ctrl-C, a network failure): it continues where it stopped
and never stores an image twice. The last lines are the report; `--json` prints it as JSON.
Exit status 1 if the import failed (the report says why).
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from labeling.services.api_keys import find_user
from labeling.services.customvision_import import (
    DONE,
    CvImportJob,
    open_customvision_import,
    run_customvision_import,
)
from project.errors import LoupeError


class Command(BaseCommand):
    help = "Copy a Custom Vision project (tags, images, labels) into a new Loupe project."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--endpoint", required=True, help="e.g. https://<name>.cognitiveservices.azure.com"
        )
        parser.add_argument("--training-key", required=True)
        parser.add_argument("--project", required=True, help="The Custom Vision project id.")
        parser.add_argument(
            "--user", default="admin", help="The Loupe account that owns the new project."
        )
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = find_user(options["user"])
            job = open_customvision_import(
                endpoint=options["endpoint"],
                training_key=options["training_key"],
                source_project_id=options["project"],
                by=user,
            )
        except LoupeError as err:
            raise CommandError(err.message) from None
        last = [-1]

        def progress(job: CvImportJob) -> None:
            if job.percent // 10 != last[0]:
                last[0] = job.percent // 10
                self.stdout.write(f"{job.percent:3d}%  {len(job.copied)} of {job.total} images")

        job = run_customvision_import(
            job_id=job.job_id, training_key=options["training_key"], on_progress=progress
        )
        report = job.report()
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=1))
        else:
            self.stdout.write(job.message)
            for note in job.notes:
                self.stdout.write(f"  note: {note}")
            for item in job.refused:
                self.stdout.write(f"  refused {item['item']}: {item['code']}: {item['message']}")
            if job.target_project_id:
                self.stdout.write(f"Loupe project: {job.target_project_id}")
        if job.state != DONE:
            raise CommandError(job.message)
