from django.apps import AppConfig


class LabelingConfig(AppConfig):
    name = "labeling"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from labeling.image_sets import register_image_set
        from labeling.services.saved_filters import QUERY_KEY, saved_filter_set

        # A saved filter the filter bar cannot show (several tags, a deleted tag) opens as a set.
        register_image_set(QUERY_KEY, saved_filter_set)
