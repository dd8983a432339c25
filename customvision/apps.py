from django.apps import AppConfig


class CustomVisionConfig(AppConfig):
    name = "customvision"
    verbose_name = "Custom Vision compatibility"
    default_auto_field = "django.db.models.BigAutoField"
