from django import forms

from labeling.models import Project


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    kind = forms.ChoiceField(choices=Project.Kind.choices, initial=Project.Kind.MULTICLASS,
                             widget=forms.RadioSelect)
    domain = forms.ChoiceField(choices=Project.Domain.choices,
                               initial=Project.Domain.GENERAL_COMPACT)
