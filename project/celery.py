"""The Celery app. Queues: `thumbnails`, `predict` (CPU, short); `train` (long, one at a time)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("loupe")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# labeling/tasks_import.py (dataset import) sits beside labeling/tasks.py.
app.autodiscover_tasks(related_name="tasks_import")
# training/tasks_model_export.py (model export).
app.autodiscover_tasks(related_name="tasks_model_export")
# labeling/tasks_export.py (dataset export) too.
app.autodiscover_tasks(related_name="tasks_export")
# training/tasks_health.py (dataset health check).
app.autodiscover_tasks(related_name="tasks_health")
# training/tasks_map.py (embedding map layout).
app.autodiscover_tasks(related_name="tasks_map")
# training/tasks_saliency.py (where the model looked: Grad-CAM, context reliance).
app.autodiscover_tasks(related_name="tasks_saliency")
# training/tasks_serving.py (the web process's ONNX serving file of an older iteration).
app.autodiscover_tasks(related_name="tasks_serving")
