"""The model card as a typed record: every shipped report.json loads into a `ModelCard` and writes back without
losing a number; older files (a section missing) and newer ones (a key this code does not know) load too; and
collecting held-out episodes leaves no temporary folder behind."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

import wm_core
from wm_core.evaluation.card import format_card, verdict
from wm_core.evaluation.model_card import Controllability, HorizonRow, ModelCard, Scores
from wm_core.evaluation.report import card_equal, heldout_episodes

SHIPPED = sorted(Path(__file__).resolve().parents[1].glob("checkpoints/*/report.json"))


def _subset(old: object, new: object) -> bool:
    """True when every key and value of `old` is in `new` (new may add keys holding null)."""
    if isinstance(old, dict):
        return isinstance(new, dict) and all(k in new and _subset(v, new[k]) for k, v in old.items())
    if isinstance(old, list):
        return isinstance(new, list) and len(old) == len(new) and all(map(_subset, old, new))
    return card_equal(old, new)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.parent.name for p in SHIPPED])
def test_shipped_reports_load_typed_and_write_back_every_number(path: Path) -> None:
    raw = json.loads(path.read_text())
    card = ModelCard.load(path)
    assert card.family == raw["family"] and card.row(5).model.psnr == raw["open_loop"][1]["model"]["psnr"]
    assert isinstance(card.controllability, Controllability) and card.extra == {}
    assert _subset(raw, card.to_json()) and ModelCard.from_json(card.to_json()) == card
    assert "playable-world bar" in format_card(card) and len(verdict(card)) >= 5  # sections may add checks


def test_older_and_newer_files_load() -> None:
    old = {"family": "ha", "env_id": "CartPole-v1", "step": 3, "open_loop": [{"k": 1, "episodes": 0}]}
    card = ModelCard.from_json(old)  # no controllability, probe, coverage, curves or budget yet
    assert card.controllability is None and card.curves.k == [] and card.budget.env_steps is None
    assert card.row(1) is None and "no held-out episode is long enough" in format_card(card)
    newer = old | {"future_section": {"ball": [0.5]}, "heldout": {"episodes": 4, "world_size": 2}}
    card = ModelCard.from_json(newer)
    assert card.extra == {"future_section": {"ball": [0.5]}} and card.heldout.extra == {"world_size": 2}
    assert card.to_json()["future_section"] == {"ball": [0.5]} and card.to_json()["heldout"]["world_size"] == 2
    with pytest.raises(ValueError, match="missing env_id, step"):
        ModelCard.from_json({"family": "ha"})


def test_typed_rows_drive_the_bar() -> None:
    good, bad = Scores(mse=0.001, psnr=30.0, fg_mse=0.01), Scores(mse=0.01, psnr=20.0, fg_mse=0.05)
    rows = [HorizonRow(k=k, episodes=3, model=good, copy_last=bad, mean_frame=bad) for k in (5, 15)]
    card = ModelCard(family="ha", env_id="CartPole-v1", step=1, open_loop=rows)
    assert [c["passed"] for c in verdict(card)] == [True, True, True, None, None]


def test_unreadable_report_is_one_value_error(tmp_path: Path) -> None:
    bad = tmp_path / "report.json"
    bad.write_text('{"family": "ha", "env_id": "x", "step": 1, "open_loop": [{"episodes": 2}]}')
    with pytest.raises(ValueError, match="not a readable model card"):
        ModelCard.load(bad)


def test_heldout_collection_leaves_no_temporary_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    eps, info = heldout_episodes("CartPole-v1", 2)
    assert len(eps) == 2 and info.episodes == 2 and len(eps[0].obs) == len(eps[0])  # loaded before the folder went
    store = wm_core.heldout_store("CartPole-v1", 1, tmp_path / "kept", max_steps=5)
    assert len(store) == 1 and (tmp_path / "kept" / "index.json").exists()  # a named folder is the caller's
    with pytest.raises(TypeError):
        wm_core.heldout_store("CartPole-v1", 1, max_steps=5)  # no silent temporary folder that nobody removes
    assert list(tmp.iterdir()) == []


def test_the_app_and_the_lessons_read_the_saved_card() -> None:
    from playground.inspector import saved_report
    from playground.lesson_views import card_of, error_plot, listen_rows

    run = str(SHIPPED[0].parent)
    text, png, files = saved_report(run)
    assert "playable-world bar" in text and files[0].endswith("report.json")
    card = card_of(run)
    cells = listen_rows(card)
    assert len(cells) == 4 and cells[0].startswith(f"{card.row(5).model.psnr:.1f}")
    assert len(error_plot(card, 5).axes[0].lines) == 4  # model, two baselines, the slider's k
    blind = [p.parent for p in SHIPPED if p.parent.name.endswith("-blind")]
    if blind:
        assert listen_rows(card_of(str(blind[0])))[3] == "**action-blind**"
