"""Forms: they check the shape and type of input; the rules live in labeling.services."""

from __future__ import annotations

from collections.abc import Sequence

from django import forms

from labeling.models import Project, Tag
from labeling.services.images import ImageFilter
from project.ids import FormIdField, FormIdListField, InvalidId, parse_ids


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    kind = forms.ChoiceField(
        choices=Project.Kind.choices, initial=Project.Kind.MULTICLASS, widget=forms.RadioSelect
    )
    domain = forms.ChoiceField(
        choices=Project.Domain.choices, initial=Project.Domain.GENERAL_COMPACT
    )


class ImageFilterForm(forms.Form):
    """The query string the gallery and the tagging view share: filter, tag and page cursor.

    A bad value is dropped, not refused: an old bookmark to a deleted tag shows all images.
    """

    filter = forms.ChoiceField(choices=[(s, s) for s in ImageFilter.STATUSES], required=False)
    tag = FormIdField(required=False)
    after = FormIdField(required=False)
    before = FormIdField(required=False)

    def __init__(self, data: object, *, tags: Sequence[Tag]) -> None:
        super().__init__(data)
        self.tag_ids = {tag.pk for tag in tags}
        # Other apps' filters register once the apps are ready: read them per form.
        self.fields["filter"].choices = [(s, s) for s in ImageFilter.statuses()]  # type: ignore[attr-defined]

    def clean_tag(self) -> int | None:
        tag_id = self.cleaned_data.get("tag")
        return tag_id if tag_id in self.tag_ids else None

    def _value(self, name: str) -> object:
        self.is_valid()
        return self.cleaned_data.get(name)

    def image_filter(self) -> ImageFilter:
        tag_id = self._value("tag")
        if isinstance(tag_id, int):
            return ImageFilter(tag_id=tag_id)
        return ImageFilter(status=str(self._value("filter") or "all"))

    def cursors(self) -> dict[str, int | None]:
        return {"after": self._value("after"), "before": self._value("before")}  # type: ignore[dict-item]


class BulkActionForm(forms.Form):
    """The gallery's bulk toolbar: tag, untag or delete the selected images."""

    ACTIONS = [("tag", "Tag"), ("untag", "Untag"), ("delete", "Delete")]

    action = forms.ChoiceField(choices=ACTIONS)
    image_ids = FormIdListField(required=False)
    tag = forms.ModelChoiceField(
        queryset=Tag.objects.none(), required=False, empty_label="All tags"
    )

    def __init__(self, data: object, *, project: Project) -> None:
        super().__init__(data)
        self.fields["tag"].queryset = project.tags.all()  # type: ignore[attr-defined]

    def clean(self) -> dict[str, object]:
        cleaned = super().clean() or {}
        if not cleaned.get("image_ids"):
            raise forms.ValidationError("Select at least one image first.")
        if cleaned.get("action") == "tag" and not cleaned.get("tag"):
            self.add_error("tag", "Choose the tag to add to the selected images.")
        return cleaned


class TagToggleForm(forms.Form):
    """One key press in the tagging view: the tag, the image version the page saw, advance?

    `tags` are the project's tags, already loaded by the view: a key press is the hot path, so
    the form picks from them instead of querying again.
    """

    tag = forms.TypedChoiceField(coerce=int, choices=())
    version = forms.IntegerField(min_value=1)
    advance = forms.BooleanField(required=False)

    def __init__(self, data: object, *, tags: Sequence[Tag]) -> None:
        super().__init__(data)
        self.tags = {tag.pk: tag for tag in tags}
        self.fields["tag"].choices = [(tag.pk, tag.name) for tag in tags]  # type: ignore[attr-defined]

    def clean_tag(self) -> Tag:
        return self.tags[self.cleaned_data["tag"]]


class TagUndoForm(forms.Form):
    """U / Ctrl+Z in the tagging view: the tags to put back, and the version the change made.

    `tags` is comma-separated tag ids (empty: the image was untagged before the change).
    """

    tags = forms.RegexField(regex=r"^(\d+(,\d+)*)?$", required=False)
    version = forms.IntegerField(min_value=1)

    def clean_tags(self) -> list[int]:
        try:
            return parse_ids(self.cleaned_data["tags"], field="tags")
        except InvalidId as err:
            raise forms.ValidationError(err.message) from None
