"""Routes of the Training API, mounted by project/urls.py under TRAINING_PREFIX:
`customvision/v3.0` … `v3.3` and `v3.4-preview`, then `training`, the version segment and the
`training` segment in any case (Microsoft's docs write `v3.3/Training`, the SDK 3.1
`v3.4-preview/training`). All versions share these handlers: v3.4's additions are optional,
read-only fields. No trailing slashes, as Custom Vision clients send none; any other address
under the prefix answers a JSON 404 naming the operation (never an HTML page).
"""

from django.urls import path, re_path

from customvision import training_exports as exports
from customvision import training_images as images
from customvision import training_iterations as iterations
from customvision import training_labels as labels
from customvision import training_performance as performance
from customvision import training_predictions as predictions
from customvision import training_projects as projects
from customvision.training_media import serve_media
from customvision.training_wire import TRAINING_PREFIX, endpoint, unsupported_view

__all__ = ["TRAINING_PREFIX", "urlpatterns"]  # project/urls.py mounts urlpatterns there


P = "projects/<str:project_id>"
IT = f"{P}/iterations/<str:iteration_id>"

urlpatterns = [
    path("media/<str:token>", serve_media, name="training-media"),
    path("domains", endpoint(GET=projects.get_domains), name="training-domains"),
    path("domains/<str:domain_id>", endpoint(GET=projects.get_domain), name="training-domain"),
    path(
        "projects",
        endpoint(GET=projects.get_projects, POST=projects.create_project),
        name="training-projects",
    ),
    path(
        P,
        endpoint(
            GET=projects.get_project, PATCH=projects.update_project, DELETE=projects.delete_project
        ),
        name="training-project",
    ),
    path(
        f"{P}/tags", endpoint(GET=projects.get_tags, POST=projects.create_tag), name="training-tags"
    ),
    path(
        f"{P}/tags/<str:tag_id>",
        endpoint(GET=projects.get_tag, PATCH=projects.update_tag, DELETE=projects.delete_tag),
        name="training-tag",
    ),
    path(
        f"{P}/images",
        endpoint(
            GET=images.get_images,
            POST=images.create_images_from_data,
            DELETE=images.delete_images,
        ),
        name="training-images",
    ),
    path(
        f"{P}/images/files",
        endpoint(POST=images.create_images_from_files),
        name="training-image-files",
    ),
    path(
        f"{P}/images/urls",
        endpoint(POST=images.create_images_from_urls),
        name="training-image-urls",
    ),
    path(
        f"{P}/images/predictions",
        endpoint(POST=images.create_images_from_predictions),
        name="training-image-predictions",
    ),
    path(f"{P}/images/id", endpoint(GET=images.get_images_by_ids), name="training-images-by-id"),
    path(f"{P}/images/count", endpoint(GET=images.get_image_count), name="training-image-count"),
    path(f"{P}/images/tagged", endpoint(GET=images.get_tagged_images), name="training-tagged"),
    path(
        f"{P}/images/tagged/count",
        endpoint(GET=images.get_tagged_image_count),
        name="training-tagged-count",
    ),
    path(
        f"{P}/images/untagged", endpoint(GET=images.get_untagged_images), name="training-untagged"
    ),
    path(
        f"{P}/images/untagged/count",
        endpoint(GET=images.get_untagged_image_count),
        name="training-untagged-count",
    ),
    path(
        f"{P}/images/tags",
        endpoint(POST=labels.create_image_tags, DELETE=labels.delete_image_tags),
        name="training-image-tags",
    ),
    path(
        f"{P}/images/regions",
        endpoint(POST=labels.create_image_regions, DELETE=labels.delete_image_regions),
        name="training-image-regions",
    ),
    path(f"{P}/train", endpoint(POST=iterations.train_project), name="training-train"),
    path(f"{P}/iterations", endpoint(GET=iterations.get_iterations), name="training-iterations"),
    path(
        IT,
        endpoint(
            GET=iterations.get_iteration,
            PATCH=iterations.update_iteration,
            DELETE=iterations.delete_iteration,
        ),
        name="training-iteration",
    ),
    path(
        f"{IT}/publish",
        endpoint(POST=iterations.publish_iteration, DELETE=iterations.unpublish_iteration),
        name="training-publish",
    ),
    path(
        f"{IT}/performance",
        endpoint(GET=performance.get_iteration_performance),
        name="training-performance",
    ),
    path(
        f"{IT}/performance/images",
        endpoint(GET=performance.get_image_performances),
        name="training-image-performances",
    ),
    path(
        f"{IT}/performance/images/count",
        endpoint(GET=performance.get_image_performance_count),
        name="training-image-performance-count",
    ),
    path(
        f"{IT}/export",
        endpoint(GET=exports.get_exports, POST=exports.export_iteration),
        name="training-export",
    ),
    path(
        f"{P}/quicktest/image",
        endpoint(POST=predictions.quick_test_image),
        name="training-quicktest-image",
    ),
    path(
        f"{P}/quicktest/url",
        endpoint(POST=predictions.quick_test_image_url),
        name="training-quicktest-url",
    ),
    path(
        f"{P}/predictions/query",
        endpoint(POST=predictions.query_predictions),
        name="training-predictions-query",
    ),
    path(
        f"{P}/predictions",
        endpoint(DELETE=predictions.delete_prediction),
        name="training-predictions",
    ),
    path(
        f"{P}/tagsandregions/suggestions",
        endpoint(POST=predictions.suggest_tags_and_regions),
        name="training-suggestions",
    ),
    re_path(r"^(?P<rest>.*)\Z", unsupported_view, name="training-unsupported"),
]
