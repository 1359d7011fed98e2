"""Reading worklist order (priority, triage score, time against the target), filters, claims."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pacsflow.domain.errors import InvalidInput
from pacsflow.domain.orders import Priority
from pacsflow.domain.reading import (
    Claim,
    NotClaimHolder,
    ReadingFilter,
    ReadingItem,
    ReadingTargets,
    StudyClaimed,
    check_release,
    is_overdue,
    matches,
    order_worklist,
    reading_key,
    take_claim,
)
from pacsflow.domain.uids import Uid

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
RANK = {Priority.STAT: 0, Priority.ASAP: 1, Priority.ROUTINE: 2}
_ids = itertools.count(1)


def item(
    priority: Priority = Priority.ROUTINE,
    *,
    score: float | None = None,
    waited_minutes: int = 0,
    uid: str | None = None,
    **kw: object,
) -> ReadingItem:
    return ReadingItem(
        study_instance_uid=Uid(uid or f"1.2.3.{next(_ids)}"),
        accession_number="",
        priority=priority,
        waiting_since=NOW - timedelta(minutes=waited_minutes),
        triage_score=score,
        **kw,  # type: ignore[arg-type]
    )


def uids(items: list[ReadingItem]) -> list[str]:
    return [i.study_instance_uid for i in items]


# -- strategies -------------------------------------------------------------------------------

scores = st.none() | st.floats(allow_nan=False, allow_infinity=False, width=32)
#: Whole minutes keep the reference comparison exact (a ratio of integers).
items = st.builds(
    item,
    st.sampled_from(Priority),
    score=scores,
    waited_minutes=st.integers(min_value=0, max_value=20_000),
)
targets = st.fixed_dictionaries(
    {p: st.integers(min_value=1, max_value=10_000) for p in Priority}
).map(lambda m: ReadingTargets({p: float(v) for p, v in m.items()}))


def reference_key(i: ReadingItem, t: ReadingTargets) -> tuple[int, int, float, Fraction]:
    """The order as the issue states it, computed independently (exact ratios)."""
    waited = Fraction(int((NOW - i.waiting_since).total_seconds()) // 60)
    ratio = waited / Fraction(int(t.minutes[i.priority]))
    score = i.triage_score
    return RANK[i.priority], score is None, -(score or 0.0), -ratio


# -- the order --------------------------------------------------------------------------------


@given(st.lists(items, max_size=40), targets)
def test_the_order_is_priority_then_score_then_most_overdue(
    given_items: list[ReadingItem], t: ReadingTargets
) -> None:
    ordered = order_worklist(given_items, NOW, t)
    assert sorted(uids(ordered)) == sorted(uids(given_items))
    keys = [reference_key(i, t) for i in ordered]
    assert keys == sorted(keys)


@given(st.lists(items, max_size=40), targets)
def test_stat_always_comes_before_asap_and_asap_before_routine(
    given_items: list[ReadingItem], t: ReadingTargets
) -> None:
    ranks = [RANK[i.priority] for i in order_worklist(given_items, NOW, t)]
    assert ranks == sorted(ranks)


@given(
    st.lists(
        st.builds(
            item,
            st.sampled_from(Priority),
            score=st.sampled_from([None, 0.5, 0.9]),
            waited_minutes=st.sampled_from([0, 30, 600]),
        ),
        max_size=30,
    ),
    targets,
)
def test_items_with_equal_keys_keep_their_given_order(
    given_items: list[ReadingItem], t: ReadingTargets
) -> None:
    ordered = order_worklist(given_items, NOW, t)
    position = {u: n for n, u in enumerate(uids(given_items))}
    for a, b in itertools.pairwise(ordered):
        if reference_key(a, t) == reference_key(b, t):
            assert position[a.study_instance_uid] < position[b.study_instance_uid]


@given(items, items, items, targets)
def test_the_key_is_a_total_order(
    a: ReadingItem, b: ReadingItem, c: ReadingItem, t: ReadingTargets
) -> None:
    ka, kb, kc = (reading_key(i, NOW, t) for i in (a, b, c))
    assert ka <= kb or kb <= ka  # any two are comparable
    if ka <= kb <= kc:
        assert ka <= kc  # transitive
    if ka <= kb and kb <= ka:
        assert reference_key(a, t) == reference_key(b, t)  # ties only where the issue ties


@given(st.lists(items, max_size=20), targets, st.randoms(use_true_random=False))
def test_the_order_does_not_depend_on_the_order_given(
    given_items: list[ReadingItem], t: ReadingTargets, rnd: random.Random
) -> None:
    shuffled = list(given_items)
    rnd.shuffle(shuffled)
    first = [reading_key(i, NOW, t) for i in order_worklist(given_items, NOW, t)]
    second = [reading_key(i, NOW, t) for i in order_worklist(shuffled, NOW, t)]
    assert first == second


@given(st.floats(allow_nan=False, allow_infinity=False), st.integers(0, 100_000))
def test_a_stat_study_precedes_a_routine_one_whatever_its_score_or_wait(
    score: float, waited: int
) -> None:
    stat = item(Priority.STAT, waited_minutes=0)
    routine = item(Priority.ROUTINE, score=score, waited_minutes=waited)
    assert order_worklist([routine, stat], NOW, ReadingTargets())[0] is stat


def test_a_scored_study_precedes_an_unscored_one_of_the_same_priority() -> None:
    unscored = item(Priority.ASAP, waited_minutes=10_000)
    low = item(Priority.ASAP, score=-3.0)
    high = item(Priority.ASAP, score=0.97)
    assert order_worklist([unscored, low, high], NOW, ReadingTargets()) == [high, low, unscored]


def test_waiting_counts_against_each_prioritys_target() -> None:
    t = ReadingTargets({Priority.ASAP: 240.0, Priority.ROUTINE: 1440.0})
    half = item(Priority.ASAP, waited_minutes=120)  # 0.5 of its target
    late = item(Priority.ASAP, waited_minutes=300)  # 1.25
    fresh = item(Priority.ROUTINE, waited_minutes=60)
    old = item(Priority.ROUTINE, waited_minutes=2 * 1440)
    assert order_worklist([half, fresh, late, old], NOW, t) == [late, half, old, fresh]
    assert is_overdue(late, NOW, t)
    assert not is_overdue(half, NOW, t)


def test_a_study_from_the_future_has_waited_nothing() -> None:
    ahead = item(waited_minutes=-30)
    assert ahead.waiting(NOW) == timedelta(0)
    assert not is_overdue(ahead, NOW, ReadingTargets())


def test_targets_default_per_priority_and_take_partial_overrides() -> None:
    t = ReadingTargets({Priority.STAT: 30.0})
    assert t.for_priority(Priority.STAT) == timedelta(minutes=30)
    assert t.for_priority(Priority.ASAP) == timedelta(hours=4)
    assert t.for_priority(Priority.ROUTINE) == timedelta(days=1)


@pytest.mark.parametrize("minutes", [0.0, -5.0, float("nan"), float("inf")])
def test_a_target_must_be_a_positive_number_of_minutes(minutes: float) -> None:
    with pytest.raises(InvalidInput):
        ReadingTargets({Priority.ASAP: minutes})


@pytest.mark.parametrize("score", [float("nan"), float("inf"), float("-inf")])
def test_a_triage_score_must_be_finite(score: float) -> None:
    with pytest.raises(InvalidInput):
        item(score=score)


# -- filters ----------------------------------------------------------------------------------


def test_filters_by_modality_procedure_and_reader() -> None:
    claim = Claim(Uid("1.2.9"), "house", NOW - timedelta(minutes=1), NOW + timedelta(minutes=5))
    ct = item(
        uid="1.2.9",
        modalities=("CT", "SR"),
        procedure_code="CTHEAD",
        procedure_description="CT head without contrast",
        claim=claim,
    )
    assert matches(ct, ReadingFilter(), NOW)
    assert matches(ct, ReadingFilter(modality="ct"), NOW)
    assert not matches(ct, ReadingFilter(modality="MR"), NOW)
    assert matches(ct, ReadingFilter(procedures=("cthead",)), NOW)
    assert matches(ct, ReadingFilter(procedures=("MRBRAIN", "head")), NOW)
    assert not matches(ct, ReadingFilter(procedures=("chest",)), NOW)
    assert matches(ct, ReadingFilter(reader="house"), NOW)
    assert not matches(ct, ReadingFilter(reader="cuddy"), NOW)
    assert not matches(ct, ReadingFilter(reader="house"), NOW + timedelta(minutes=6))


# -- claims -----------------------------------------------------------------------------------

UID = Uid("1.2.840.1")
HALF_HOUR = timedelta(minutes=30)


def test_a_free_study_is_claimed_until_the_claim_expires() -> None:
    claim = take_claim(None, UID, "house", NOW, HALF_HOUR)
    assert claim == Claim(UID, "house", NOW, NOW + HALF_HOUR)
    assert claim.is_active(NOW + timedelta(minutes=29))
    assert not claim.is_active(NOW + HALF_HOUR)


def test_the_holder_extends_a_claim_and_others_are_refused_until_it_expires() -> None:
    first = take_claim(None, UID, "house", NOW, HALF_HOUR)
    later = NOW + timedelta(minutes=10)
    assert take_claim(first, UID, "house", later, HALF_HOUR).expires_at == later + HALF_HOUR
    with pytest.raises(StudyClaimed) as refused:
        take_claim(first, UID, "cuddy", later, HALF_HOUR)
    assert refused.value.claim == first
    assert "house" in str(refused.value)
    expired = NOW + HALF_HOUR
    assert take_claim(first, UID, "cuddy", expired, HALF_HOUR).reader == "cuddy"


def test_only_the_holder_releases() -> None:
    claim = take_claim(None, UID, "house", NOW, HALF_HOUR)
    check_release(claim, "house", NOW)
    check_release(claim, "house", NOW + timedelta(hours=2))  # expired: still theirs to clear
    with pytest.raises(NotClaimHolder, match="house holds"):
        check_release(claim, "cuddy", NOW)
    with pytest.raises(NotClaimHolder, match="not claimed"):
        check_release(None, "house", NOW)


def test_a_claim_needs_a_reader_and_a_duration() -> None:
    with pytest.raises(InvalidInput):
        take_claim(None, UID, "", NOW, HALF_HOUR)
    with pytest.raises(InvalidInput):
        take_claim(None, UID, "house", NOW, timedelta(0))


def test_targets_from_configuration_names() -> None:
    t = ReadingTargets.from_minutes({"stat": 15, " Routine ": 600})
    assert t.for_priority(Priority.STAT) == timedelta(minutes=15)
    assert t.for_priority(Priority.ROUTINE) == timedelta(hours=10)
    with pytest.raises(InvalidInput):
        ReadingTargets.from_minutes({"URGENT": 10})


def test_blank_procedure_terms_filter_nothing() -> None:
    assert matches(item(procedure_code="CTHEAD"), ReadingFilter(procedures=(" ", "")), NOW)
