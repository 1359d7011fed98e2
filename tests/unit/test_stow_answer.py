"""Reading a STOW-RS answer: which instances the origin server kept, and why not the others."""

from __future__ import annotations

from pacsflow.adapters.dicomweb.stow import _FAILED, _REFERENCED, _uids


def _item(uid: str, reason: int | None = None) -> dict[str, object]:
    item: dict[str, object] = {"00081155": {"vr": "UI", "Value": [uid]}}
    if reason is not None:
        item["00081197"] = {"vr": "US", "Value": [reason]}
    return item


def test_referenced_and_failed_instances_are_told_apart_with_the_reason() -> None:
    answer = {
        _REFERENCED: {"vr": "SQ", "Value": [_item("1.2.3")]},
        _FAILED: {"vr": "SQ", "Value": [_item("1.2.4", 0xA700), _item("1.2.5", 0x0110)]},
    }
    assert _uids(answer, _REFERENCED) == {"1.2.3": ""}
    assert _uids(answer, _FAILED) == {
        "1.2.4": "failure reason 0xa700",
        "1.2.5": "failure reason 0x0110",
    }


def test_an_answer_without_sequences_names_nobody() -> None:
    assert _uids({}, _REFERENCED) == {}
    assert _uids({_FAILED: {"vr": "SQ"}}, _FAILED) == {}
