"""Which prior studies are worth fetching before the radiologist opens the current one.

Relevance rules are chosen per procedure code (a rule with an empty code is the default):
same modality (or one of a listed set), same body part or anatomic region, within N years
before the current study, and at most K, the most recent first. An ordered study has no
body part yet: it comes from the site's procedure code mapping, else from the words of the
procedure's text (ordered_body_part).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from pacsflow.domain.patients import PatientIdentifier
from pacsflow.domain.uids import Uid

#: Body parts that belong to one anatomic region (DICOM BodyPartExamined defined terms and
#: common free-text variants). A prior of the same region is relevant to the current one.
REGIONS: tuple[frozenset[str], ...] = (
    frozenset({"HEAD", "BRAIN", "SKULL", "HEADNECK", "FACE", "ORBIT", "SINUS", "IAC"}),
    frozenset({"NECK", "CSPINE", "HEADNECK"}),
    frozenset(
        {"CHEST", "THORAX", "LUNG", "HEART", "CHESTABDOMEN", "CHESTABDPELVIS", "RIB", "BREAST"}
    ),
    frozenset(
        {
            "ABDOMEN",
            "ABD",
            "LIVER",
            "KIDNEY",
            "PANCREAS",
            "CHESTABDOMEN",
            "ABDOMENPELVIS",
            "CHESTABDPELVIS",
        }
    ),
    frozenset(
        {"PELVIS", "HIP", "ABDOMENPELVIS", "CHESTABDPELVIS", "BLADDER", "PROSTATE", "UTERUS"}
    ),
    frozenset({"SPINE", "CSPINE", "TSPINE", "LSPINE", "SSPINE", "COCCYX"}),
    frozenset({"EXTREMITY", "KNEE", "ANKLE", "FOOT", "LEG", "HAND", "WRIST", "ELBOW", "ARM"}),
    frozenset({"SHOULDER", "CLAVICLE", "ARM"}),
)


def _norm(value: str) -> str:
    return "".join(ch for ch in value.upper() if ch.isalnum())


def same_region(a: str, b: str) -> bool:
    """True when two body parts are the same or lie in one anatomic region."""
    x, y = _norm(a), _norm(b)
    if not x or not y:
        return False
    return x == y or any(x in region and y in region for region in REGIONS)


#: Words of a procedure's text that name a body part, as a BodyPartExamined term: every term
#: of REGIONS names itself, plus these adjectives and abbreviations.
_WORDS: dict[str, str] = {
    **{term: term for region in REGIONS for term in region},
    "ABD": "ABDOMEN",
    "ABDOMINAL": "ABDOMEN",
    "PELVIC": "PELVIS",
    "CARDIAC": "HEART",
    "CRANIAL": "HEAD",
    "RENAL": "KIDNEY",
    "HEPATIC": "LIVER",
    "MAMMO": "BREAST",
    "MAMMOGRAPHY": "BREAST",
    "PULMONARY": "LUNG",
}

#: Texts naming body parts of several regions, e.g. "CT chest abdomen pelvis".
_COMBINED: dict[frozenset[str], str] = {
    frozenset({"HEAD", "NECK"}): "HEADNECK",
    frozenset({"CHEST", "ABDOMEN"}): "CHESTABDOMEN",
    frozenset({"ABDOMEN", "PELVIS"}): "ABDOMENPELVIS",
    frozenset({"CHEST", "ABDOMEN", "PELVIS"}): "CHESTABDPELVIS",
}


def body_part_in_text(text: str) -> str:
    """The body part a procedure's text names ("CT chest w/o contrast" -> CHEST), else "".

    Whole words are matched (a trailing S dropped: "lungs"). Words of one region give the
    first; of several regions, their combined term (CHESTABDOMEN...) or "" when there is none:
    an order that cannot be narrowed keeps every prior rather than the wrong ones.
    """
    found: list[str] = []
    for word in "".join(ch if ch.isalnum() else " " for ch in text.upper()).split():
        term = _WORDS.get(word) or (_WORDS.get(word[:-1]) if word.endswith("S") else None)
        if term and term not in found:
            found.append(term)
    if not found:
        return ""
    if any(all(term in region for term in found) for region in REGIONS):
        return found[0]
    return _COMBINED.get(frozenset(found), "")


def ordered_body_part(procedure_code: str, texts: Iterable[str], mapping: Mapping[str, str]) -> str:
    """The body part an order examines: the site's mapping of its code, else its texts' words.

    The texts are tried in turn (the code's meaning, then the procedure description).
    """
    if procedure_code in mapping:
        return mapping[procedure_code]
    return next((part for part in map(body_part_in_text, texts) if part), "")


@dataclass(frozen=True, slots=True)
class RelevanceRule:
    """Which priors matter for a procedure."""

    procedure_code: str = ""  # empty: the default rule
    same_modality: bool = True
    modalities: tuple[str, ...] = ()  # also relevant, whatever the current modality
    same_body_part: bool = False
    years: int = 5
    max_priors: int = 3

    def __post_init__(self) -> None:
        if self.years < 0 or self.max_priors < 0:
            raise ValueError("years and max_priors cannot be negative")


@dataclass(frozen=True, slots=True)
class PriorCandidate:
    """A study of the patient found in an archive (or the local index)."""

    study_instance_uid: str
    archive: str
    study_date: date | None = None
    modalities: tuple[str, ...] = ()
    body_parts: tuple[str, ...] = ()
    description: str = ""
    instance_count: int | None = None


@dataclass(frozen=True, slots=True)
class CurrentStudy:
    """What the priors are for: the ordered or just-published study."""

    reference_date: date
    modalities: tuple[str, ...] = ()
    body_part: str = ""
    procedure_code: str = ""
    exclude: frozenset[str] = frozenset()  # the current study itself


def rule_for(rules: Sequence[RelevanceRule], procedure_code: str) -> RelevanceRule:
    """The rule of this procedure code, else the default rule, else the built-in default."""
    exact = next(
        (r for r in rules if r.procedure_code and r.procedure_code == procedure_code), None
    )
    default = next((r for r in rules if not r.procedure_code), None)
    return exact or default or RelevanceRule()


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def is_relevant(current: CurrentStudy, prior: PriorCandidate, rule: RelevanceRule) -> bool:
    """True when the rule says the prior matters for the current study."""
    if prior.study_instance_uid in current.exclude:
        return False
    if prior.study_date is not None:
        if prior.study_date > current.reference_date:
            return False
        if prior.study_date < _years_before(current.reference_date, rule.years):
            return False
    wanted = {m.upper() for m in current.modalities} if rule.same_modality else set()
    wanted |= {m.upper() for m in rule.modalities}
    if wanted and not wanted & {m.upper() for m in prior.modalities}:
        return False
    if rule.same_body_part and current.body_part and prior.body_parts:
        # A prior whose body part is unknown is kept: better one study too many than none.
        return any(same_region(current.body_part, part) for part in prior.body_parts)
    return True


def choose_priors(
    current: CurrentStudy,
    candidates: Iterable[PriorCandidate],
    rules: Sequence[RelevanceRule] = (),
) -> list[PriorCandidate]:
    """The relevant priors, most recent first, at most the rule's count; one per study UID.

    A study found in several archives is taken from the first that listed it; an undated
    study sorts after every dated one.
    """
    rule = rule_for(rules, current.procedure_code)
    seen: set[str] = set()
    relevant: list[PriorCandidate] = []
    for prior in candidates:
        if prior.study_instance_uid in seen or not is_relevant(current, prior, rule):
            continue
        seen.add(prior.study_instance_uid)
        relevant.append(prior)
    relevant.sort(key=lambda p: (p.study_date is not None, p.study_date or date.min), reverse=True)
    return relevant[: rule.max_priors]


class PriorState(enum.StrEnum):
    """Where the prefetch of one prior study stands."""

    LOCAL = "local"  # already in the local index: nothing to fetch
    QUEUED = "queued"
    RETRIEVING = "retrieving"
    DONE = "done"
    FAILED = "failed"  # the last attempt failed; the job retries until dead-lettered


@dataclass(frozen=True, slots=True)
class PriorRecord:
    """One prior study chosen for a prefetch request, and how its retrieval went."""

    request_key: str
    study_instance_uid: Uid
    archive: str
    patient: PatientIdentifier
    state: PriorState
    requested_at: datetime
    study_date: date | None = None
    modalities: tuple[str, ...] = ()
    description: str = ""
    completed_at: datetime | None = None
    instances: int = 0
    last_error: str = ""

    @property
    def latency(self) -> float | None:
        """Seconds from the request to the prior being local."""
        if self.completed_at is None:
            return None
        return (self.completed_at - self.requested_at).total_seconds()


__all__ = [
    "REGIONS",
    "CurrentStudy",
    "PriorCandidate",
    "PriorRecord",
    "PriorState",
    "RelevanceRule",
    "body_part_in_text",
    "choose_priors",
    "is_relevant",
    "ordered_body_part",
    "rule_for",
    "same_region",
]
