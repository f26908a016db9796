"""k-means archetypes: k by silhouette, planted clusters recovered, stored through the job."""

from __future__ import annotations

import numpy as np
import pytest
from django.utils import timezone

from personalization.clustering import cluster, silhouette
from personalization.models import Archetype, ArchetypeMembership, ProfileInterest
from personalization.selectors import archetype_for_session
from personalization.tasks import compute_archetypes
from tests.federation.factories import NeuronFactory
from tests.sessions_app.factories import GlobalUserProfileFactory, UserSessionFactory

GROUPS = {
    "runner": {"running": 5.0, "shoes": 3.0},
    "cook": {"recipes": 6.0, "kitchen": 2.0},
    "reader": {"books": 4.0, "poetry": 3.0},
}


def planted(rng: np.random.Generator, per_group: int) -> tuple[list[dict[str, float]], list[str]]:
    vectors, truth = [], []
    for name, centre in GROUPS.items():
        for _ in range(per_group):
            weights = {c: max(w * rng.uniform(0.6, 1.4), 0.01) for c, w in centre.items()}
            weights[str(rng.choice(["news", "sale", "help"]))] = float(rng.uniform(0, 0.8))
            vectors.append(weights)
            truth.append(name)
    return vectors, truth


def test_silhouette_prefers_the_planted_number_of_clusters():
    """On three well-separated groups the silhouette criterion picks k = 3."""
    rng = np.random.default_rng(1)
    vectors, truth = planted(rng, 20)
    vocabulary = sorted({c for v in vectors for c in v})
    matrix = np.array([[v.get(c, 0.0) for c in vocabulary] for v in vectors])
    result = cluster(matrix, max_k=8, seed=0)
    assert result.k == 3
    assert result.silhouette > 0.5
    # Every planted group lands in exactly one cluster and no cluster mixes groups.
    pairs = set(zip(truth, result.labels.tolist(), strict=True))
    assert len(pairs) == 3


def test_structureless_data_gets_a_single_archetype():
    """Uniform noise has no real clusters: one archetype, not invented groups."""
    rng = np.random.default_rng(2)
    matrix = rng.uniform(0.9, 1.1, size=(40, 6))
    assert cluster(matrix, max_k=6).k == 1


def test_silhouette_of_perfect_separation_is_near_one():
    """Two tight far-apart blobs score close to 1."""
    points = np.array([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5)
    assert silhouette(points, np.array([0] * 5 + [1] * 5)) == pytest.approx(1.0)


@pytest.mark.django_db
def test_archetype_job_recovers_planted_clusters_and_labels_them():
    """The Celery job clusters profile vectors, labels clusters by top categories and stores membership."""
    neuron = NeuronFactory()
    rng = np.random.default_rng(3)
    vectors, truth = planted(rng, 8)
    now = timezone.now()
    profiles = []
    for weights in vectors:
        profile = GlobalUserProfileFactory(neuron=neuron)
        ProfileInterest.objects.create(profile=profile, weights=weights, as_of=now)
        profiles.append(profile)
    assert compute_archetypes.delay(neuron.pk).get() == 3

    archetypes = {a.key: a for a in Archetype.objects.filter(neuron=neuron)}
    assert set(archetypes) == {"running-shoes", "recipes-kitchen", "books-poetry"}
    assert archetypes["running-shoes"].label == "Running & Shoes"
    assert all(a.size == 8 for a in archetypes.values())
    expected = {"runner": "running-shoes", "cook": "recipes-kitchen", "reader": "books-poetry"}
    for profile, group in zip(profiles, truth, strict=True):
        assert ArchetypeMembership.objects.get(profile=profile).archetype.key == expected[group]

    # A new anonymous session of a runner is matched to the nearest centroid live.
    session = UserSessionFactory(neuron=neuron)
    from personalization.models import SessionInterest

    SessionInterest.objects.create(session=session, weights={"running": 1.0}, as_of=now)
    assert archetype_for_session(session=session).key == "running-shoes"


@pytest.mark.django_db
def test_rerunning_the_job_replaces_archetypes():
    """The job is idempotent: a second run leaves one set of archetypes and memberships."""
    neuron = NeuronFactory()
    now = timezone.now()
    vectors, _ = planted(np.random.default_rng(4), 6)
    for weights in vectors:
        ProfileInterest.objects.create(profile=GlobalUserProfileFactory(neuron=neuron), weights=weights, as_of=now)
    compute_archetypes.delay(neuron.pk)
    compute_archetypes.delay(neuron.pk)
    assert Archetype.objects.filter(neuron=neuron).count() == 3
    assert ArchetypeMembership.objects.count() == len(vectors)


@pytest.mark.django_db
def test_too_few_profiles_give_no_archetypes():
    """Three profiles are not a population: no clusters are made."""
    neuron = NeuronFactory()
    for _ in range(3):
        ProfileInterest.objects.create(
            profile=GlobalUserProfileFactory(neuron=neuron), weights={"a": 1.0}, as_of=timezone.now()
        )
    assert compute_archetypes.delay(neuron.pk).get() == 0
    assert not Archetype.objects.exists()
