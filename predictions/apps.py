from django.apps import AppConfig


class PredictionsConfig(AppConfig):
    name = "predictions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Suggested tags in labeling's gallery: labeling may not import us, so we register.
        from predictions.gallery import register

        register()
