"""factory_boy factories for the data model. Images get real (tiny) files."""

from __future__ import annotations

import hashlib
import io

import factory
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from PIL import Image as PILImage

from labeling.models import Image, ImageTag, Membership, Project, Region, Role, Tag


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", "password123")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    name = factory.Sequence(lambda n: f"Project {n}")
    kind = Project.Kind.MULTICLASS
    owner = factory.SubFactory(UserFactory)


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    project = factory.SubFactory(ProjectFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.ANNOTATOR


class TagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tag

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"tag{n}")
    kind = Tag.Kind.REGULAR


def _png(n: int, width: int = 8, height: int = 8) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (width, height), (n * 37 % 256, n * 91 % 256, n * 13 % 256)).save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


class ImageFactory(factory.django.DjangoModelFactory):
    """An image row with a real PNG file; each one is distinct (different colour and size)."""

    class Meta:
        model = Image

    class Params:
        content = factory.LazyAttributeSequence(lambda o, n: _png(n, o.width, o.height + n % 3))

    project = factory.SubFactory(ProjectFactory)
    width = 8
    height = 8
    original_name = factory.Sequence(lambda n: f"image{n}.png")
    format = "PNG"
    file = factory.LazyAttribute(lambda o: ContentFile(o.content, name=o.original_name))
    sha256 = factory.LazyAttribute(lambda o: hashlib.sha256(o.content).hexdigest())
    size_bytes = factory.LazyAttribute(lambda o: len(o.content))


class ImageTagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ImageTag

    image = factory.SubFactory(ImageFactory)
    tag = factory.SubFactory(TagFactory)


class RegionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Region

    image = factory.SubFactory(ImageFactory)
    tag = factory.SubFactory(TagFactory)
    left = 0.1
    top = 0.1
    width = 0.5
    height = 0.5
