import time, random, cProfile, pstats
import pytest
from django.urls import reverse
from labeling.models import Image
from training.models import Iteration, IterationImage, IterationScore, IterationTag

@pytest.mark.django_db
def test_bench(client_for, project, users):
    it = Iteration.objects.create(project=project, number=1, name="I", status="completed", backbone="lite0")
    for j in range(10):
        IterationTag.objects.create(iteration=it, name=f"t{j}", index=j, image_count=500)
    imgs = Image.objects.bulk_create([Image(project=project, file=f"images/x{i}.png", sha256=f"{i:064d}", format="PNG", size_bytes=1, width=8, height=8, thumbnail=f"thumbnails/x{i}.jpg") for i in range(5000)])
    snaps = IterationImage.objects.bulk_create([IterationImage(iteration=it, image=im, sha256=im.sha256, file_name=im.file.name, original_name=f"x{i}.png", labels=[i % 10]) for i, im in enumerate(imgs)])
    rng = random.Random(0)
    IterationScore.objects.bulk_create([IterationScore(iteration=it, iteration_image=s, fold=0, scores=[round(rng.random(), 6) for _ in range(10)]) for s in snaps])
    client = client_for(users["admin"])
    url = reverse("training:iteration-performance", args=[project.id, it.id])
    client.get(url)
    p = cProfile.Profile(); p.enable(); client.get(url); p.disable()
    pstats.Stats(p).sort_stats("cumulative").print_stats(25)
