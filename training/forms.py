"""Forms of the training pages: shape and types only; the rules live in training.services."""

from __future__ import annotations

from django import forms

from training.models import Iteration


class TrainForm(forms.Form):
    training_type = forms.ChoiceField(
        choices=Iteration.TrainingType.choices,
        initial=Iteration.TrainingType.QUICK,
        widget=forms.RadioSelect,
    )
    budget_minutes = forms.IntegerField(
        min_value=1, initial=10, required=False, label="Budget (minutes, advanced training)"
    )
    force = forms.BooleanField(required=False, label="Train even if nothing changed")

    def service_kwargs(self) -> dict[str, object]:
        data = self.cleaned_data
        return {
            "training_type": data["training_type"],
            "budget_s": (data.get("budget_minutes") or 0) * 60,
            "force": data["force"],
        }


class NameForm(forms.Form):
    name = forms.CharField(max_length=100)


class ThresholdForm(forms.Form):
    threshold = forms.FloatField(min_value=0.0, max_value=1.0)


class CompareForm(forms.Form):
    a = forms.IntegerField()
    b = forms.IntegerField()
