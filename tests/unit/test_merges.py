"""Patient merges (ADT A40): history follows the survivor, whatever order things arrive in."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pacsflow.domain import commands as cmd
from pacsflow.domain.patients import Patient
from pacsflow.domain.studies import StudyFilter
from tests import factories as f
from tests.unit.test_late_matching import World


def _world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_merge_moves_orders_studies_and_worklist_to_the_survivor(tmp_path: Path) -> None:
    w = _world(tmp_path)
    old, survivor = f.patient("OLD1"), f.patient("NEW1")
    o = f.order(old)
    w.apply(cmd.RegisterPatient(survivor), cmd.PlaceOrder(o, old))
    w.store(f.received(old, accession=o.accession_number))
    w.apply(cmd.MergePatients(survivor, (old.primary,)))
    [view] = w.queries.studies(StudyFilter())
    assert view.patient is not None
    assert view.patient.primary == survivor.primary
    assert [i.order.patient for i in w.queries.worklist()] == [survivor.primary]
    # The old identifier redirects to the survivor.
    found = w.queries.patient(old.primary)
    assert found is not None
    assert found.primary == survivor.primary
    assert old.primary in found.identifiers
    assert w.queries.studies(StudyFilter(patient=old.primary)) == []


def test_merging_twice_changes_nothing_more(tmp_path: Path) -> None:
    w = _world(tmp_path)
    old, survivor = f.patient("OLD2"), f.patient("NEW2")
    w.apply(cmd.RegisterPatient(old), cmd.RegisterPatient(survivor))
    merge = cmd.MergePatients(survivor, (old.primary,))
    w.apply(merge)
    once = w.queries.patient(survivor.primary)
    w.apply(merge)
    assert w.queries.patient(survivor.primary) == once


def test_merge_of_an_unknown_patient_catches_its_later_images(tmp_path: Path) -> None:
    w = _world(tmp_path)
    survivor = f.patient("NEW3")
    o = f.order(survivor)
    w.apply(cmd.PlaceOrder(o, survivor))
    ghost = f.identifier("GHOST3")
    w.apply(cmd.MergePatients(survivor, (ghost,)))
    # Images still carrying the merged ID arrive afterwards (the race of the issue).
    w.store(f.received(survivor, accession=o.accession_number, patient_id=ghost.value))
    [view] = w.queries.studies(StudyFilter())
    assert view.patient is not None
    assert view.patient.primary == survivor.primary


def test_merge_chains_end_in_one_history(tmp_path: Path) -> None:
    w = _world(tmp_path)
    a, b, c = f.patient("A4"), f.patient("B4"), f.patient("C4")
    orders = [f.order(p) for p in (a, b, c)]
    w.apply(*(cmd.PlaceOrder(o, p) for o, p in zip(orders, (a, b, c), strict=True)))
    for o, p in zip(orders, (a, b, c), strict=True):
        w.store(f.received(p, accession=o.accession_number))
    w.apply(cmd.MergePatients(b, (a.primary,)))
    w.apply(cmd.MergePatients(c, (b.primary,)))
    views = w.queries.studies(StudyFilter(patient=c.primary))
    assert len(views) == 3
    for p in (a, b, c):
        found = w.queries.patient(p.primary)
        assert found is not None
        assert found.primary == c.primary


@st.composite
def merge_plans(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]]]:
    n = draw(st.integers(min_value=2, max_value=6))
    merges = draw(
        st.lists(
            st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(lambda x: x[0] != x[1]),
            max_size=8,
        )
    )
    return n, merges


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=merge_plans(), images_first=st.booleans())
def test_any_sequence_of_merges_leaves_each_history_complete_and_single(
    tmp_path: Path, plan: tuple[int, list[tuple[int, int]]], images_first: bool
) -> None:
    n, merges = plan
    w = _world(tmp_path)
    prefix = f.unique("H")
    patients = [f.patient(f"{prefix}-{i}") for i in range(n)]
    orders = [f.order(p) for p in patients]

    def send_images() -> None:
        for o, p in zip(orders, patients, strict=True):
            w.store(f.received(p, accession=o.accession_number))

    w.apply(*(cmd.PlaceOrder(o, p) for o, p in zip(orders, patients, strict=True)))
    if images_first:
        send_images()
    # The oracle: union-find over patient indexes, the survivor of each merge wins.
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for survivor, merged in merges:
        current: Patient | None = w.queries.patient(patients[survivor].primary)
        assert current is not None
        w.apply(cmd.MergePatients(current, (patients[merged].primary,)))
        if root(merged) != root(survivor):
            parent[root(merged)] = root(survivor)
    if not images_first:
        send_images()

    groups: dict[int, set[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), set()).add(i)
    for members in groups.values():
        holders = {w.queries.patient(patients[i].primary) for i in members}
        assert len(holders) == 1  # one patient per merged group
        [holder] = holders
        assert holder is not None
        studies = w.queries.studies(StudyFilter(patient=holder.primary))
        assert len(studies) == len(members)  # nothing lost, nothing duplicated
