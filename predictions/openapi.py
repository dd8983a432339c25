"""OpenAPI description of the prediction endpoints, added to drf-spectacular's schema.

The prediction API is a plain async Django view and an ASGI fast lane (see
customvision/prediction.py for why), which drf-spectacular cannot introspect, so its four
/api/predict/ paths are described here by hand and merged in by a postprocessing hook.
"""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/PredictionError"}

_SCHEMAS: dict[str, Any] = {
    "PredictionError": {
        "type": "object",
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        "required": ["code", "message"],
    },
    "BoundingBox": {
        "type": "object",
        "description": "Fractions of the image's width and height, top-left origin.",
        "properties": {k: {"type": "number"} for k in ("left", "top", "width", "height")},
        "required": ["left", "top", "width", "height"],
    },
    "TagPrediction": {
        "type": "object",
        "properties": {
            "probability": {"type": "number"},
            "tagId": {"type": "integer"},
            "tagName": {"type": "string"},
            "boundingBox": {"$ref": "#/components/schemas/BoundingBox"},
        },
        "required": ["probability", "tagId", "tagName"],
    },
    "ImagePrediction": {
        "type": "object",
        "properties": {
            "id": {
                "type": "integer",
                "nullable": True,
                "description": "The stored prediction; null for /nostore.",
            },
            "project": {"type": "integer"},
            "iteration": {"type": "integer"},
            "created": {"type": "string", "format": "date-time"},
            "predictions": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/TagPrediction"},
                "description": "Sorted by probability, high to low.",
            },
        },
        "required": ["id", "project", "iteration", "created", "predictions"],
    },
}


def _operation(kind: str, store: bool) -> dict[str, Any]:
    what = "every tag with its probability" if kind == "classify" else "boxes after NMS"
    body = {"type": "string", "format": "binary"}

    def error(text: str) -> dict[str, Any]:
        return {"description": text, "content": {"application/json": {"schema": _ERROR}}}

    return {
        "operationId": f"predict_{kind}{'' if store else '_nostore'}",
        "tags": ["prediction"],
        "summary": f"{kind.capitalize()} an image with a published iteration"
        + ("" if store else " without storing it"),
        "description": f"Returns {what}. "
        + (
            "The image and its prediction are stored for review in the Predictions tab."
            if store
            else "Nothing is kept."
        ),
        "parameters": [
            {"name": "project_id", "in": "path", "required": True, "schema": {"type": "integer"}},
            {"name": "publish_name", "in": "path", "required": True, "schema": {"type": "string"}},
            {
                "name": "Prediction-Key",
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
            },
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": body},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"imageData": body},
                        "required": ["imageData"],
                    }
                },
            },
        },
        "responses": {
            "200": {
                "description": "The prediction.",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ImagePrediction"}}
                },
            },
            "400": error("The body is not a readable image (the reason says why)."),
            "401": error("The Prediction-Key is missing, wrong or revoked."),
            "404": error("No such project, or no iteration published under that name."),
            "413": error("The image is larger than the configured limit (4 MB by default)."),
        },
        "security": [],
    }


def add_prediction_paths(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOKS entry: merge the prediction paths into the schema."""
    paths = result.setdefault("paths", {})
    for kind in ("classify", "detect"):
        base = f"/api/predict/{{project_id}}/{kind}/iterations/{{publish_name}}/image"
        paths[base] = {"post": _operation(kind, store=True)}
        paths[base + "/nostore"] = {"post": _operation(kind, store=False)}
    result.setdefault("components", {}).setdefault("schemas", {}).update(_SCHEMAS)
    return result
