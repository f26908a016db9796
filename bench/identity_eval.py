"""Cross-device identity: precision and recall of merged links on a labelled synthetic population.

    python bench/identity_eval.py [--devices 10000] [--days 30] [--seed 7] [--keep]

Generates people with 1-4 devices, households with a shared family tablet, office and
mobile-carrier networks shared by many, fingerprint collisions (popular configurations),
cookie churn (a device changing anonymous id), partial fingerprinting consent, logins
(identify) and sign-ups (alias). Every visit goes through the services (session_create,
session_heartbeat, session_update / profile_alias) in time order, with the clock set to the
visit. The per-session linking task is held back during generation; then the linking job
(`identity_link_sweep`) runs over everything, timed, and once more to show it is idempotent.

Figures, over pairs of sessions:
- precision: of the pairs put into one profile, the share that are one person;
- recall (knowable): of the same-person pairs that consented signals make knowable, the
  share put into one profile. Knowable = joined by the person's user id (identify/alias),
  by anonymous-id continuity on a device only they use, or by the fingerprint of a device
  only they use whose hash no other device has, with fingerprinting consent on both sides;
- recall (all): against every same-person pair, knowable or not;
- a baseline in the same run: "merge whatever shares a fingerprint hash, no score, no veto".

Uses a temporary SQLite file unless DATABASE_URL is set (then that database, migrated).
Run on a shared 2-core machine: the job time is indicative.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BROWSERS = {
    "desktop": [
        ("Chrome", "Windows"),
        ("Chrome", "Mac OS X"),
        ("Firefox", "Windows"),
        ("Safari", "Mac OS X"),
        ("Edge", "Windows"),
    ],
    "mobile": [("Mobile Safari", "iOS"), ("Chrome Mobile", "Android"), ("Samsung Internet", "Android")],
    "tablet": [("Mobile Safari", "iOS"), ("Chrome", "Android")],
}


@dataclass
class Device:
    id: int
    kind: str
    browser: str
    os: str
    fingerprint: str
    consent: bool
    users: list[int]
    home: str
    office: str | None = None
    anonymous_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    last_session: dict | None = None

    @property
    def shared(self) -> bool:
        return len(self.users) > 1


@dataclass
class Visit:
    at: datetime
    device: Device
    person: int
    minutes: int


@dataclass
class Person:
    id: int
    account: str | None
    signs_up_with_alias: bool
    logged_in_once: bool = False


def build_population(rng: random.Random, n_devices: int, days: int) -> tuple[list[Device], list[Person], list[Visit]]:
    devices: list[Device] = []
    people: list[Person] = []
    offices = [f"10.{i // 250}.{i % 250}.0" for i in range(max(8, n_devices // 400))]
    common_hashes = [f"common-{i:03d}" for i in range(max(10, n_devices // 250))]
    household = 0
    while len(devices) < n_devices:
        household += 1
        home = f"81.{household // 65000}.{(household // 250) % 260}.{household % 250}"
        members = []
        for _ in range(rng.choices([1, 2, 3, 4], [0.3, 0.35, 0.2, 0.15])[0]):
            person = Person(
                id=len(people),
                account=f"user-{len(people)}" if rng.random() < 0.7 else None,
                signs_up_with_alias=rng.random() < 0.15,
            )
            people.append(person)
            members.append(person)
            office = rng.choice(offices) if rng.random() < 0.35 else None
            for _ in range(rng.choices([1, 2, 3, 4], [0.4, 0.35, 0.15, 0.1])[0]):
                kind = rng.choices(["desktop", "mobile", "tablet"], [0.45, 0.45, 0.1])[0]
                devices.append(_device(rng, len(devices), kind, [person.id], home, office, common_hashes))
        if len(members) >= 2 and rng.random() < 0.25:
            users = [m.id for m in rng.sample(members, 2)]
            devices.append(_device(rng, len(devices), "tablet", users, home, None, common_hashes))

    start = datetime.now(UTC) - timedelta(days=days)
    visits: list[Visit] = []
    for device in devices:
        for _ in range(rng.choices([1, 2, 3, 4, 5], [0.25, 0.25, 0.2, 0.15, 0.15])[0]):
            at = start + timedelta(seconds=rng.uniform(0, days * 86400))
            visits.append(Visit(at=at, device=device, person=rng.choice(device.users), minutes=rng.randint(1, 40)))
    visits.sort(key=lambda v: v.at)
    return devices, people, visits


def _device(rng, pk, kind, users, home, office, common_hashes) -> Device:
    browser, os_family = rng.choice(BROWSERS[kind])
    # A popular configuration (same phone model, stock browser) makes different devices hash alike.
    fingerprint = rng.choice(common_hashes) if rng.random() < 0.04 else uuid.UUID(int=rng.getrandbits(128)).hex
    return Device(
        id=pk,
        kind=kind,
        browser=browser,
        os=os_family,
        fingerprint=fingerprint,
        consent=rng.random() < 0.6,
        users=users,
        home=home,
        office=office if kind == "desktop" else None,
    )


def network_for(rng: random.Random, visit: Visit, carriers: list[str]) -> str:
    device = visit.device
    if device.kind == "mobile":
        return device.home if rng.random() < 0.5 else rng.choice(carriers)
    if device.office and rng.random() < 0.6:
        return device.office
    return device.home


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b) -> None:
        self.parent[self.find(a)] = self.find(b)


def pairs(n: int) -> int:
    return n * (n - 1) // 2


def score(clusters: dict[int, object], person_of: dict[int, int], knowable_of: dict[int, object]) -> dict[str, float]:
    """Pair counts of a clustering (session -> cluster id) against the truth."""
    by_cluster: dict[object, list[int]] = defaultdict(list)
    for session, cluster in clusters.items():
        by_cluster[cluster].append(session)
    predicted = true_pos = knowable_hit = 0
    for members in by_cluster.values():
        predicted += pairs(len(members))
        true_pos += sum(pairs(n) for n in Counter(person_of[s] for s in members).values())
        knowable_hit += sum(pairs(n) for n in Counter(knowable_of[s] for s in members).values())
    all_true = sum(pairs(n) for n in Counter(person_of.values()).values())
    knowable = sum(pairs(n) for n in Counter(knowable_of.values()).values())
    return {
        "predicted": predicted,
        "true_pos": true_pos,
        "precision": true_pos / predicted if predicted else 1.0,
        "recall_knowable": knowable_hit / knowable if knowable else 1.0,
        "recall_all": true_pos / all_true if all_true else 1.0,
        "knowable": knowable,
        "all_true": all_true,
    }


def clusters_now(neuron) -> dict[int, object]:
    """session pk -> its surviving profile, or its anonymous id when it has none."""
    from sessions_app.linking import _survivors
    from sessions_app.models import UserSession

    rows = list(UserSession.objects.filter(neuron=neuron).values_list("pk", "profile_id", "anonymous_id"))
    survivors = _survivors({p for _, p, _ in rows if p})
    # Without a profile, the anonymous id is the visitor: its sessions are one (anonymous) person.
    return {s: (survivors[p][0] if p else ("anon", anon)) for s, p, anon in rows}


def explain(neuron, person_of: dict[int, int], session_device: dict[int, Device]) -> None:
    """Merged probabilistic links by method and device situation, right or wrong at the two sessions."""
    from sessions_app.models import SessionBridge

    table: Counter = Counter()
    for bridge in SessionBridge.objects.filter(neuron=neuron, status="merged", method__in=["fingerprint", "network"]):
        a, b = bridge.from_session_id, bridge.to_session_id
        da, db = session_device[a], session_device[b]
        situation = (
            "shared tablet"
            if da.shared or db.shared
            else "same device"
            if da.id == db.id
            else "colliding hash"
            if da.fingerprint == db.fingerprint
            else "different devices"
        )
        fp = bridge.evidence["signals"].get("fingerprint", {})
        where = "same place" if fp.get("samePlace") else f"places={fp.get('places', '-')}"
        right = "right" if person_of[a] == person_of[b] else "WRONG"
        table[(bridge.method, situation, where, right)] += 1
    for key, count in sorted(table.items(), key=lambda item: -item[1]):
        print(f"  {count:>6}  " + " | ".join(str(k) for k in key))


def explain_misses(clusters, knowable_of, session_device, logged_in, session_consent) -> None:
    """Knowable same-person pairs left in different profiles, by what connects them."""
    table: Counter = Counter()
    by_component: dict[object, dict[object, list[int]]] = defaultdict(lambda: defaultdict(list))
    for s, component in knowable_of.items():
        by_component[component][clusters[s]].append(s)
    for parts in by_component.values():
        groups = list(parts.values())
        for i, g1 in enumerate(groups):
            for g2 in groups[i + 1 :]:
                a, b = g1[0], g2[0]
                devices1 = {session_device[x].id for x in g1}
                devices2 = {session_device[x].id for x in g2}
                kind = "a device in common" if devices1 & devices2 else "no device in common"
                login = (any(logged_in[x] for x in g1), any(logged_in[x] for x in g2))
                consent = (any(session_consent[x] for x in g1), any(session_consent[x] for x in g2))
                table[(kind, f"login={login}", f"fpconsent={consent}")] += len(g1) * len(g2)
                del a, b
    print("missed knowable pairs:")
    for key, count in sorted(table.items(), key=lambda item: -item[1])[:12]:
        print(f"  {count:>6}  " + " | ".join(key))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--explain", action="store_true", help="break merged links down by cause and truth")
    parser.add_argument("--keep", action="store_true", help="keep the generated rows (a DATABASE_URL run)")
    args = parser.parse_args()

    tmp = None
    if not os.environ.get("DATABASE_URL"):
        tmp = tempfile.NamedTemporaryFile(prefix="identity-eval-", suffix=".sqlite3", delete=False)
        os.environ["SQLITE_PATH"] = tmp.name
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "YmVuY2gtb25seS1rZXktMzItYnl0ZXMtbG9uZy4uLi4=")
    os.environ.setdefault("GEOIP_ENABLED", "0")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    import time_machine
    from django.core.management import call_command

    from federation.models import Neuron
    from sessions_app.enrichment import DeviceInfo, RequestMeta
    from sessions_app.identity import profile_alias
    from sessions_app.linking import identity_link_sweep
    from sessions_app.models import ProfileMerge, SessionBridge
    from sessions_app.services import session_create, session_heartbeat, session_update

    call_command("migrate", verbosity=0)
    rng = random.Random(args.seed)
    devices, people, visits = build_population(rng, args.devices, args.days)
    carriers = [f"100.64.{i}.0" for i in range(max(4, args.devices // 1500))]
    neuron = Neuron.objects.create(
        slug=f"identity-eval-{uuid.uuid4().hex[:8]}",
        name="Identity evaluation",
        publishable_key=f"pk_eval_{uuid.uuid4().hex}",
        secret_key_hash=uuid.uuid4().hex + uuid.uuid4().hex,
        secret_key_prefix="sk_eval",
    )
    print(
        f"population: {len(people)} people, {len(devices)} devices "
        f"({sum(d.shared for d in devices)} shared family tablets, "
        f"{sum(d.fingerprint.startswith('common-') for d in devices)} with a colliding fingerprint, "
        f"{sum(d.consent for d in devices)} consenting to fingerprinting), {len(visits)} visits"
    )

    person_of: dict[int, int] = {}
    session_device: dict[int, Device] = {}
    session_anon: dict[int, str] = {}
    session_consent: dict[int, bool] = {}
    logged_in: dict[int, bool] = {}
    t0 = time.perf_counter()
    # The per-session task is held back so that the job below is measured on its own.
    with mock.patch("sessions_app.services.identity_link_enqueue"):
        for visit in visits:
            device = visit.device
            restore = None
            if rng.random() < 0.3:
                # Cleared cookies, a private window, another browser profile: a new anonymous id.
                device.anonymous_id = str(uuid.uuid4())
                device.last_session = None
            elif device.last_session is not None:
                restore = device.last_session  # the session manager restores from its stored token
            meta = RequestMeta(
                ip_truncated=network_for(rng, visit, carriers),
                country="GB",
                device=DeviceInfo(device.kind, device.browser, "", device.os, ""),
                gpc=False,
            )
            with time_machine.travel(visit.at, tick=False):
                result = session_create(
                    neuron=neuron,
                    request_meta=meta,
                    anonymous_id=device.anonymous_id,
                    consent={"analytics": True, "fingerprinting": device.consent},
                    fingerprint={"hash": device.fingerprint, "components": {"kind": device.kind}},
                    restore=restore,
                )
                session = result.session
                device.last_session = {"sessionId": session.public_id, "token": result.token}
            person = people[visit.person]
            login = person.account and rng.random() < (0.35 if device.kind == "desktop" else 0.25)
            with time_machine.travel(visit.at + timedelta(minutes=visit.minutes), tick=False):
                rotated = session_heartbeat(session=session).token
                if login:
                    if person.signs_up_with_alias and not person.logged_in_once:
                        profile_alias(neuron=neuron, previous_id=device.anonymous_id, user_id=person.account)
                    rotated = session_update(session=session, user_id=person.account).token or rotated
                    person.logged_in_once = True
            if rotated:
                device.last_session["token"] = rotated
            if result.restored and session.pk in person_of:
                logged_in[session.pk] = logged_in[session.pk] or bool(login)
                continue  # the visit continued a live session: one session, labelled by its first visitor
            person_of[session.pk] = visit.person
            session_device[session.pk] = device
            session_anon[session.pk] = device.anonymous_id
            session_consent[session.pk] = device.consent
            logged_in[session.pk] = bool(login)
    generation = time.perf_counter() - t0
    print(f"generation through the services: {generation:.1f} s ({len(visits) / generation:.0f} visits/s)")

    before = ProfileMerge.objects.filter(neuron=neuron).count()
    deterministic_clusters = clusters_now(neuron)
    t0 = time.perf_counter()
    run = identity_link_sweep(neuron_id=neuron.pk)
    job = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = identity_link_sweep(neuron_id=neuron.pk)
    job_again = time.perf_counter() - t0
    print(f"deterministic merges during generation (identify/alias): {before}")
    print(
        f"linking job: {job:.1f} s over {len(visits)} sessions; scored {run.scored} profile pairs, "
        f"merged {run.merged}, suggested {run.suggested}"
    )
    print(f"second run (idempotent): {job_again:.1f} s, merged {again.merged}, suggested {again.suggested}")

    # --- truth ------------------------------------------------------------------------------------
    # Knowable components: a person's sessions joined by their user id, by anonymous-id continuity
    # on a device only they use, or by a consented fingerprint unique to a device only they use.
    hash_devices = Counter(d.fingerprint for d in devices)
    uf = UnionFind()
    for s, person in person_of.items():
        uf.find(s)
        device = session_device[s]
        if logged_in[s]:
            uf.union(s, ("user", person))
        if not device.shared:
            uf.union(s, ("anon", session_anon[s]))
            if session_consent[s] and hash_devices[device.fingerprint] == 1:
                uf.union(s, ("device", device.id))
    knowable_of = {s: (person_of[s], uf.find(s)) for s in person_of}

    ours = score(clusters_now(neuron), person_of, knowable_of)
    deterministic = score(deterministic_clusters, person_of, knowable_of)

    # Baseline: the same deterministic links, then "same fingerprint hash = same person", no score, no veto.
    base = UnionFind()
    for s in person_of:
        base.union(("s", s), ("cluster", deterministic_clusters[s]))
        if session_consent[s]:
            base.union(("s", s), ("hash", session_device[s].fingerprint))
    baseline = score({s: base.find(("s", s)) for s in person_of}, person_of, knowable_of)

    probabilistic = SessionBridge.objects.filter(neuron=neuron, method__in=["fingerprint", "network"])
    print(
        f"bridges: {probabilistic.filter(status='merged').count()} probabilistic merged, "
        f"{probabilistic.filter(status='suggested').count()} suggested for an operator"
    )
    print(f"pairs: {ours['all_true']} same-person pairs, {ours['knowable']} knowable from consented signals")
    for label, figures in (
        ("identify/alias only (before the job)", deterministic),
        ("scored linking (ours)", ours),
        ("baseline: merge on any shared hash", baseline),
    ):
        print(
            f"{label:<36} precision {figures['precision']:.4f}   recall(knowable) {figures['recall_knowable']:.4f}"
            f"   recall(all) {figures['recall_all']:.4f}   pairs merged {figures['predicted']}"
        )
    # The same figures without the sessions of shared family tablets: a person using someone
    # else's signed-in device is not knowable from any signal, so it bounds every method.
    own = [s for s in person_of if not session_device[s].shared]
    final = clusters_now(neuron)
    alone = score({s: final[s] for s in own}, {s: person_of[s] for s in own}, {s: knowable_of[s] for s in own})
    print(
        f"{'ours, without shared-tablet sessions':<36} precision {alone['precision']:.4f}   "
        f"recall(knowable) {alone['recall_knowable']:.4f}   recall(all) {alone['recall_all']:.4f}"
        f"   pairs merged {alone['predicted']}"
    )
    if args.explain:
        explain(neuron, person_of, session_device)
        explain_misses(clusters_now(neuron), knowable_of, session_device, logged_in, session_consent)
    added = ours["predicted"] - deterministic["predicted"]
    added_true = ours["true_pos"] - deterministic["true_pos"]
    print(
        f"pairs the linking job added: {added}, of which one person: {added_true} "
        f"(precision {added_true / added if added else 1.0:.4f})"
    )
    target = ours["precision"] >= 0.99 and ours["recall_knowable"] >= 0.9
    print(f"target precision >= 0.99 at recall >= 0.9 (knowable): {'met' if target else 'NOT met'}")
    print("(shared 2-core machine: times are indicative)")

    if not args.keep:
        neuron.delete()
    if tmp is not None:
        for suffix in ("", "-wal", "-shm"):
            Path(tmp.name + suffix).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
