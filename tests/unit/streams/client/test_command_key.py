"""The commands topic's key (streams.client.commands.command_key): a draft's save and its
discard share a key, so one worker takes them in order."""

from __future__ import annotations

import pytest

from streams.client.commands import command_key
from streams.worker.schemas import Command, DecodeError, decode

SPEC = {"id": "next-week", "design": "random-days"}


def _cmd(**kw: object) -> Command:
    return Command(command_id="c-1", actor="ana", **kw)  # type: ignore[arg-type]


def test_a_draft_and_its_discard_share_the_drafts_id_as_key() -> None:
    save = _cmd(kind="draft", spec=SPEC)
    drop = _cmd(kind="discard", experiment="next-week", reason="not now")
    assert command_key(save) == command_key(drop) == "next-week"


def test_other_commands_keep_their_keys() -> None:
    assert command_key(_cmd(kind="pause", experiment="shoes", reason="r")) == "shoes"
    # a create is keyed by its command id, as before
    assert command_key(_cmd(kind="create", spec=SPEC)) == "c-1"


def test_a_draft_or_discard_labelled_v1_or_v2_is_refused() -> None:
    for v in (1, 2):
        with pytest.raises(DecodeError) as exc:
            decode(
                Command,
                f'{{"v": {v}, "command_id": "c", "kind": "draft", "spec": {{"id": "d"}}, '
                f'"actor": "a"}}'.encode(),
            )
        assert exc.value.reason == "invalid_field" and "v 3" in str(exc.value)
    assert _cmd(kind="draft", spec=SPEC).v == 3
