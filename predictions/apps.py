from django.apps import AppConfig


class PredictionsConfig(AppConfig):
    name = "predictions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Suggested tags in labeling's gallery: labeling may not import us, so we register.
        from predictions.gallery import register

        register()

        # "?like=<image id>": the image and its nearest training images by embedding ("more
        # like this"), for a training image or a stored prediction's (predictions.services.similar).
        from labeling.image_sets import register_image_set
        from predictions.services.similar import like_set
        from training.services.embedding_map import LIKE_KEY

        register_image_set(LIKE_KEY, like_set)
