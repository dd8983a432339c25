"""The SDK's prediction client, configured as Microsoft's quickstarts do."""

from __future__ import annotations

from typing import Any


def prediction_client(endpoint: str, key: str) -> Any:
    from azure.cognitiveservices.vision.customvision.prediction import (
        CustomVisionPredictionClient,
    )
    from msrest.authentication import ApiKeyCredentials

    return CustomVisionPredictionClient(
        endpoint, ApiKeyCredentials(in_headers={"Prediction-key": key})
    )
