"""Routes of the Prediction API.

`urlpatterns` are Custom Vision's, mounted by project/urls.py under
`customvision/v3.0/prediction/` and `v3.1` (PREDICTION_PREFIX: the case of `v` and of the
`prediction` segment is free, as Microsoft's docs write `Prediction`). `native_urlpatterns`
are Loupe's first prediction URLs under /api/predict/, kept as aliases of the image routes.
No trailing slashes: Custom Vision clients never send one.
"""

from django.urls import path, re_path

from customvision import prediction as views
from customvision.training_wire import case_free

PREDICTION_PREFIX = rf"^customvision/{case_free('v')}3\.[01]/{case_free('prediction')}/"

_TARGET = r"(?P<project_id>[^/]+)/{kind}/iterations/(?P<publish_name>[^/]+)"

urlpatterns = [
    re_path(
        rf"^{_TARGET.format(kind=kind)}/{source}{suffix}\Z",
        getattr(views, f"{kind}_{source}{suffix.replace('/', '_')}"),
        name=f"cv-predict-{kind}-{source}{suffix.replace('/', '-')}",
    )
    for kind in ("classify", "detect")
    for source in ("image", "url")
    for suffix in ("", "/nostore")
]

native_urlpatterns = [
    path(
        "<int:project_id>/classify/iterations/<str:publish_name>/image",
        views.native_classify_image,
        name="api-predict-classify",
    ),
    path(
        "<int:project_id>/classify/iterations/<str:publish_name>/image/nostore",
        views.native_classify_image_nostore,
        name="api-predict-classify-nostore",
    ),
    path(
        "<int:project_id>/detect/iterations/<str:publish_name>/image",
        views.native_detect_image,
        name="api-predict-detect",
    ),
    path(
        "<int:project_id>/detect/iterations/<str:publish_name>/image/nostore",
        views.native_detect_image_nostore,
        name="api-predict-detect-nostore",
    ),
]
