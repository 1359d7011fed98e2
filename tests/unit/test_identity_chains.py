"""Any sequence of registrations, merges, links, unlinks, identifier changes and images.

Runs the real workflow (intake + ingest + queries on in-memory SQLite) against a small model of
who is who, written from the rules in docs/matching.md ("Identity changes"), not from the SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pacsflow.domain import commands as cmd
from pacsflow.domain.errors import IdentifierInUse
from pacsflow.domain.patients import Issuer, Patient, PatientId, PatientIdentifier
from pacsflow.domain.studies import StudyFilter
from pacsflow.domain.uids import Uid
from tests import factories as f
from tests.unit.test_late_matching import World

Op = tuple[str, ...]

SLOTS = 3  # people the HIS registers (identifiers S0..S2)
GHOSTS = 1  # an identifier nobody registers (G0): merged, changed, or on images only
NEW = 2  # identifiers only an A47 brings (N0, N1); images may carry them before it


@dataclass
class Model:
    """Records (patients), what each holds, and who owns each order and study."""

    owner: dict[str, int] = field(default_factory=dict)  # every identifier ever held -> record
    active: dict[int, list[str]] = field(default_factory=dict)  # record -> own IDs, primary 1st
    links: set[frozenset[int]] = field(default_factory=set)
    orders: dict[str, int] = field(default_factory=dict)  # accession -> record of its patient
    published: dict[str, int] = field(default_factory=dict)  # study UID -> owning record
    held: dict[str, tuple[str, str]] = field(default_factory=dict)  # UID -> (received ID, acc.)
    records: int = 0

    def record(self, ident: str) -> int:
        """The record holding ident, registering one for it when nobody does."""
        if ident not in self.owner:
            self.records += 1
            self.active[self.records] = [ident]
            self.owner[ident] = self.records
        return self.owner[ident]

    def component(self, r: int) -> set[int]:
        """r and every record linked to it, directly or through others."""
        found, todo = {r}, [r]
        while todo:
            here = todo.pop()
            for link in self.links:
                if here in link:
                    for other in link - found:
                        found.add(other)
                        todo.append(other)
        return found

    def identifiers(self, records: set[int]) -> set[str]:
        return {i for i, r in self.owner.items() if r in records}

    def merge(self, survivor: str, merged: str) -> None:
        rs = self.record(survivor)
        rm = self.owner.get(merged)
        if rm is None:
            self.owner[merged] = rs  # unknown: an alias, for images still to come
        elif rm != rs:
            for ident, r in self.owner.items():
                if r == rm:
                    self.owner[ident] = rs
            del self.active[rm]
            for book in (self.orders, self.published):
                for key, r in book.items():
                    if r == rm:
                        book[key] = rs
            moved = {frozenset(rs if r == rm else r for r in link) for link in self.links}
            self.links = {link for link in moved if len(link) == 2}

    def link(self, a: str, b: str) -> None:
        ra, rb = self.record(a), self.record(b)
        if ra != rb:
            self.links.add(frozenset({ra, rb}))

    def unlink(self, a: str, b: str) -> None:
        ra, rb = self.owner.get(a), self.owner.get(b)
        if ra is not None and rb is not None:
            self.links.discard(frozenset({ra, rb}))

    def change(self, incorrect: str, correct: str) -> bool:
        """False when refused: the correct identifier already names another patient."""
        ro, rn = self.owner.get(incorrect), self.owner.get(correct)
        if ro is not None and rn is not None:
            if ro != rn:
                return False
            own = self.active[ro]
            if correct not in own and incorrect in own:
                own[own.index(incorrect)] = correct  # changed back: the alias in place again
            return True  # else changed before: nothing more to do
        if ro is None:
            self.owner[incorrect] = self.record(correct)
            return True
        own = self.active[ro]
        if incorrect in own:
            own[own.index(incorrect)] = correct  # in place: a wrong primary -> a right primary
        else:
            own.append(correct)  # the incorrect one was merged away before
        self.owner[correct] = ro
        return True

    def matches(self, received: str, accession: str) -> bool:
        """Images of an order match when their patient ID is one of its person's identifiers."""
        return received in self.identifiers(self.component(self.orders[accession]))

    def settle(self) -> None:
        """Held studies that now match are published (late matching)."""
        for uid, (received, accession) in list(self.held.items()):
            if self.matches(received, accession):
                self.published[uid] = self.orders[accession]
                del self.held[uid]


_slot = st.integers(0, SLOTS - 1).map(lambda i: f"S{i}")
_ghost = st.integers(0, GHOSTS - 1).map(lambda i: f"G{i}")
_new = st.integers(0, NEW - 1).map(lambda i: f"N{i}")
_any = st.one_of(_slot, _ghost, _new)

_register = st.tuples(st.just("register"), _slot)
# Images for a person's order, under its own ID ("") or any other (a typo, another patient's).
_image = st.tuples(st.just("image"), _slot, st.one_of(st.just(""), _any))
operations = st.lists(
    st.one_of(
        _register,
        _image,
        st.tuples(st.just("merge"), _slot, _any).filter(lambda op: op[1] != op[2]),
        st.tuples(st.just("link"), _slot, _slot).filter(lambda op: op[1] != op[2]),
        st.tuples(st.just("unlink"), _slot, _slot),
        st.tuples(st.just("change"), _any, _any).filter(lambda op: op[1] != op[2]),
        st.just(("repeat",)),
        _image,
        _image,
    ),
    min_size=12,
    max_size=40,
)


_BOTH = [("register", "S0"), ("register", "S1")]


# The cases, always run (besides what hypothesis draws):
@example(  # a chain A -> B, then B -> C
    first=[*_BOTH, ("register", "S2")],
    then=[
        *(("image", s, "") for s in ("S0", "S1", "S2")),
        ("merge", "S1", "S0"),
        ("merge", "S2", "S1"),
        ("image", "S0", ""),
    ],
)
@example(  # a merge for a patient not yet known, then its images
    first=_BOTH, then=[("merge", "S0", "G0"), ("image", "S0", "G0"), ("register", "S1")]
)
@example(first=_BOTH, then=[("merge", "S0", "S1"), ("repeat",), ("image", "S1", "")])  # twice
@example(  # the race: images under the merged ID first (held), the merge explains them
    first=_BOTH, then=[("image", "S0", "S1"), ("merge", "S0", "S1")]
)
@example(  # link explains held images, unlink keeps them with their order's patient
    first=_BOTH,
    then=[("image", "S0", "S1"), ("image", "S1", ""), ("link", "S0", "S1"), ("unlink", "S1", "S0")],
)
@example(  # images under the correct ID before the A47; under the incorrect one after
    first=_BOTH,
    then=[("image", "S0", "N0"), ("change", "S0", "N0"), ("image", "S0", ""), ("repeat",)],
)
@example(  # an A47 undone by the opposite A47
    first=_BOTH,
    then=[("image", "S0", ""), ("change", "S0", "N0"), ("change", "N0", "S0"), ("image", "S0", "")],
)
@example(  # an A47 to an identifier of another patient is refused
    first=_BOTH, then=[("change", "S0", "N0"), ("change", "S1", "N0"), ("image", "S1", "")]
)
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first=st.lists(_register, unique=True), then=operations)
def test_every_history_ends_complete_and_single(
    tmp_path: Path, first: list[Op], then: list[Op]
) -> None:
    """Whatever arrives in whatever order, each person's imaging history is complete and single.

    A person is a set of linked patients (A24, transitively; A37 removes one link). After the
    run, checked against the index through the read side:

    * nothing lost: every study sent is stored, and is either published or held in the
      exceptions queue, exactly as the model says (held: its patient ID is not one of its
      order's person's identifiers yet; once it is, late matching has published it);
    * single: every published study is owned by exactly one patient (its order's patient,
      followed through merges), and is returned with that patient's identity;
    * complete: for every patient, a study query by each of its own identifiers (primary and
      others, not aliases) returns exactly the published studies of its person; the persons'
      study sets are disjoint and together hold every published study;
    * retired: an identifier merged (A40) or changed (A47) away returns no study, yet still
      resolves to the patient that absorbed it (for images still on their way);
    * every identifier ever held resolves to the patient the model says holds it.
    """
    w = World(tmp_path)
    prefix = f.unique("Q")
    model = Model()
    sent = 0
    slot_orders: dict[str, list[str]] = {}
    last: tuple[list[cmd.Command], Callable[[], bool]] = ([], lambda: True)

    def ident(name: str) -> PatientIdentifier:
        return PatientIdentifier(PatientId(f"{prefix}-{name}"), Issuer("HOSP"))

    def patient(name: str) -> Patient:
        return f.patient(f"{prefix}-{name}")

    def image(who: str, received: str) -> None:
        nonlocal sent
        if who not in slot_orders:
            return  # nothing scheduled for this person yet
        accession = slot_orders[who][-1]
        rec = f.received(patient(who), accession=accession, patient_id=ident(received).value)
        w.store(rec)
        sent += 1
        if model.matches(received, accession):
            model.published[rec.study_instance_uid] = model.orders[accession]
        else:
            model.held[rec.study_instance_uid] = (received, accession)

    def accepted(effect: Callable[[], None]) -> Callable[[], bool]:
        def run() -> bool:
            effect()
            return True

        return run

    for op in [*first, *then]:
        step: tuple[list[cmd.Command], Callable[[], bool]] | None = None
        match op:
            case ("register", who):
                o = f.order(patient(who))
                w.apply(cmd.RegisterPatient(patient(who)), cmd.PlaceOrder(o, patient(who)))
                model.orders[o.accession_number] = model.record(who)
                slot_orders.setdefault(who, []).append(o.accession_number)
            case ("merge", survivor, merged):
                step = (
                    [cmd.MergePatients(patient(survivor), (ident(merged),))],
                    accepted(partial(model.merge, survivor, merged)),
                )
            case ("link", a, b):
                step = (
                    [cmd.LinkPatients(patient(a), patient(b))],
                    accepted(partial(model.link, a, b)),
                )
            case ("unlink", a, b):
                step = (
                    [cmd.UnlinkPatients(ident(a), ident(b))],
                    accepted(partial(model.unlink, a, b)),
                )
            case ("change", incorrect, correct):
                step = (
                    [
                        cmd.ChangePatientIdentifier(
                            patient(correct), ident(incorrect), ident(correct)
                        )
                    ],
                    partial(model.change, incorrect, correct),
                )
            case ("repeat",):
                step = last  # the same message twice: nothing more may change
            case ("image", who, received):
                image(who, received or who)
        if step is not None:
            commands, effect = last = step
            if effect():
                w.apply(*commands)
            else:  # refused as a whole (AE): the index stays as it was
                with pytest.raises(IdentifierInUse):
                    w.apply(*commands)
        model.settle()

    # Nothing lost: every study is stored, published or held as the model says.
    stored = w.queries.studies(StudyFilter(is_published_only=False, limit=10_000))
    assert len(stored) == sent
    views = {v.study.study_instance_uid: v for v in w.queries.studies(StudyFilter(limit=10_000))}
    assert set(views) == set(model.published)
    assert {e.study_instance_uid for e in w.queries.exceptions()} == set(model.held)

    def primary(record: int) -> PatientIdentifier:
        return ident(model.active[record][0])

    # Single: one owner per study, returned with its identity.
    for uid, record in model.published.items():
        view = views[Uid(uid)]
        assert view.patient is not None
        assert view.patient.primary == primary(record)

    # Complete: each identifier of a patient finds its person's studies, persons are disjoint.
    seen: set[str] = set()
    persons = {frozenset(model.component(r)) for r in model.active}
    for person in persons:
        expected = {uid for uid, r in model.published.items() if r in person}
        for record in person:
            for own in model.active[record]:
                found = w.queries.studies(StudyFilter(patient=ident(own), limit=10_000))
                assert {v.study.study_instance_uid for v in found} == expected, own
        assert not expected & seen
        seen |= expected
    assert seen == set(model.published)

    # Retired identifiers find nothing but still resolve; every identifier resolves rightly.
    for name, record in model.owner.items():
        if name not in model.active[record]:
            assert w.queries.studies(StudyFilter(patient=ident(name))) == [], name
        found_patient = w.queries.patient(ident(name))
        assert found_patient is not None, name
        assert found_patient.primary == primary(record), name
