"""/media/<path>: an image file or thumbnail goes only to members of the image's project."""

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from tests.conftest import make_image
from tests.factories import ImageFactory, ProjectFactory
from tests.streaming import body_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def image(project):
    image = ImageFactory(project=project)
    image.thumbnail.save(f"{image.pk}.jpg", ContentFile(make_image(4, 4, fmt="JPEG")))
    return image


@pytest.mark.parametrize("role", ["admin", "reviewer", "annotator"])
def test_member_gets_the_image_file(client_for, users, image, role):
    response = client_for(users[role]).get(image.file.url)

    assert response.status_code == 200
    with image.file.open("rb") as fh:
        assert body_of(response) == fh.read()
    assert response["Content-Type"] == "image/png"
    assert response["Cache-Control"] == "private, max-age=3600"


def test_member_gets_the_thumbnail(client_for, users, image):
    response = client_for(users["annotator"]).get(image.thumbnail.url)

    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    with image.thumbnail.open("rb") as fh:
        assert body_of(response) == fh.read()


def test_non_member_gets_404_for_file_and_thumbnail(client_for, users, image):
    client = client_for(users["non_member"])

    assert client.get(image.file.url).status_code == 404
    assert client.get(image.thumbnail.url).status_code == 404


def test_member_of_another_project_gets_404(client_for, image):
    from tests.factories import MembershipFactory

    other_member = MembershipFactory(project=ProjectFactory()).user

    assert client_for(other_member).get(image.file.url).status_code == 404


def test_anonymous_is_sent_to_the_login_page(client_for, image):
    response = client_for(None).get(image.file.url)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/media/")


def test_a_file_that_belongs_to_no_image_is_not_served(client_for, users, image):
    stray = default_storage.save("images/stray.png", ContentFile(make_image()))

    response = client_for(users["admin"]).get(f"/media/{stray}")

    assert response.status_code == 404


def test_a_path_escaping_the_media_root_is_not_served(client_for, users, image):
    response = client_for(users["admin"]).get("/media/../../etc/passwd")

    assert response.status_code == 404


def test_an_image_whose_file_went_missing_is_404(client_for, users, image):
    default_storage.delete(image.file.name)

    assert client_for(users["admin"]).get(image.file.url).status_code == 404
