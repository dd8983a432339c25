from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # labeling walks "the images iteration N mispredicted" without importing training: it
        # asks its image-set registry, and this is the provider (labeling/image_sets.py).
        from labeling.image_sets import register_image_set
        from training.services.mispredicted import QUERY_KEY, mispredicted_set

        register_image_set(QUERY_KEY, mispredicted_set)

        # "?health=<rule>": the images a health rule names (training.services.health_set).
        from training.services.health_set import health_set

        register_image_set("health", health_set)
        # "?like=<image id>" ("more like this") is registered by predictions: any image a user
        # looks at, a stored prediction's included (predictions.services.similar).
