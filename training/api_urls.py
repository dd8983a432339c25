"""REST API routes of training under /api/: iterations and their performance, where the model
looked and context reliance, and the possible-mislabels queue."""

from django.urls import path

from training.api import iterations as iteration_api
from training.api import mislabels as mislabel_api
from training.api import performance as performance_api
from training.api import saliency as saliency_api

M = "projects/<int:project_id>/mislabels/"
P = "projects/<int:project_id>/iterations/"
IT = P + "<int:iteration_id>/"

urlpatterns = [
    path(P, iteration_api.IterationListApi.as_view(), name="api-iteration-list"),
    path(
        P + "compare/", performance_api.IterationCompareApi.as_view(), name="api-iteration-compare"
    ),
    path(IT, iteration_api.IterationDetailApi.as_view(), name="api-iteration-detail"),
    path(IT + "cancel/", iteration_api.IterationCancelApi.as_view(), name="api-iteration-cancel"),
    path(
        IT + "publish/", iteration_api.IterationPublishApi.as_view(), name="api-iteration-publish"
    ),
    path(
        IT + "default/", iteration_api.IterationDefaultApi.as_view(), name="api-iteration-default"
    ),
    path(
        IT + "threshold/",
        iteration_api.IterationThresholdApi.as_view(),
        name="api-iteration-threshold",
    ),
    path(
        IT + "performance/",
        performance_api.PerformanceApi.as_view(),
        name="api-iteration-performance",
    ),
    path(
        IT + "performance/images/",
        performance_api.ImageResultListApi.as_view(),
        name="api-iteration-image-results",
    ),
    path(IT + "where-looked/", saliency_api.WhereLookedApi.as_view(), name="api-where-looked"),
    path(
        IT + "where-looked/overlay/",
        saliency_api.WhereLookedOverlayApi.as_view(),
        name="api-where-looked-overlay",
    ),
    path(
        IT + "context-reliance/",
        saliency_api.ContextRelianceApi.as_view(),
        name="api-context-reliance",
    ),
    path(M, mislabel_api.MislabelListApi.as_view(), name="api-mislabel-list"),
    path(M + "accept/", mislabel_api.MislabelAcceptApi.as_view(), name="api-mislabel-accept"),
    path(M + "keep/", mislabel_api.MislabelKeepApi.as_view(), name="api-mislabel-keep"),
]
