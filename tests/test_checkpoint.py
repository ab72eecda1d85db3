"""Checkpoints: every way a run directory can be broken gives a CheckpointError that names the problem;
saves are atomic; the optimizer round-trips; resuming continues from the saved step; nothing is pickled.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TRAIN_COMMAND, TRAINED_STEPS, adam_steps, make_model, sampler_for
from safetensors.torch import load_file

from wm_core.checkpoint import (
    FORMAT,
    META_FILE,
    CheckpointError,
    load_checkpoint,
    load_optimizer_state,
    read_meta,
    save_checkpoint,
)
from wm_core.data import EpisodeStore
from wm_core.protocol import make_optimizer
from wm_core.train import train_run


@pytest.fixture
def run(trained_run: Path, tmp_path: Path) -> Path:
    """A private copy of the session's trained run, free to break."""
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def _meta(run: Path) -> dict:
    return json.loads((run / META_FILE).read_text())


def _edit(run: Path, change: Callable[[dict], None]) -> None:
    meta = _meta(run)
    change(meta)
    (run / META_FILE).write_text(json.dumps(meta))


def _error(path: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    return str(info.value)


def test_trained_run_loads(trained_run: Path) -> None:
    model, meta = load_checkpoint(trained_run)
    assert meta["family"] == "ha" and meta["env_id"] == "CartPole-v1" and meta["format"] == FORMAT
    assert meta["step"] == TRAINED_STEPS and meta["command"] == TRAIN_COMMAND
    assert meta["config"]["steps"] == TRAINED_STEPS and model.config.z_dim == meta["config"]["z_dim"]
    assert meta["budget"]["grad_steps"] == TRAINED_STEPS and meta["budget"]["device"] == "cpu"
    # checkpoint.json alone works too
    assert load_checkpoint(trained_run / META_FILE)[1]["step"] == TRAINED_STEPS


def test_missing_directory(tmp_path: Path) -> None:
    msg = _error(tmp_path / "nowhere")
    assert "nowhere" in msg and "does not exist" in msg


def test_missing_checkpoint_json(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    msg = _error(tmp_path / "empty")
    assert META_FILE in msg and "missing" in msg


def test_invalid_json(run: Path) -> None:
    (run / META_FILE).write_text('{"format": "wm-checkpoint/1", "family": ')
    msg = _error(run)
    assert "not valid JSON" in msg and "corrupt" in msg


def test_json_that_is_not_an_object(run: Path) -> None:
    (run / META_FILE).write_text("[1, 2, 3]")
    assert "JSON object" in _error(run)


def test_json_missing_keys(run: Path) -> None:
    _edit(run, lambda m: [m.pop("weights"), m.pop("action_spec")])
    msg = _error(run)
    named = msg.split("lacks")[1]
    assert "weights" in named and "action_spec" in named and "family" not in named


def test_unknown_family(run: Path) -> None:
    _edit(run, lambda m: m.update(family="no-such-family"))
    msg = _error(run)
    assert "unknown family" in msg and "no-such-family" in msg and "ha" in msg


def test_config_with_unknown_field(run: Path) -> None:
    _edit(run, lambda m: m["config"].update(warp_factor=9))
    msg = _error(run)
    assert "warp_factor" in msg and "does not know" in msg


def test_malformed_action_spec(run: Path) -> None:
    _edit(run, lambda m: m.update(action_spec={"n": 2}))
    msg = _error(run)
    assert "action_spec" in msg and "discrete or box" in msg


def test_wrong_format_string(run: Path) -> None:
    _edit(run, lambda m: m.update(format="wm-checkpoint/999"))
    msg = _error(run)
    assert "wm-checkpoint/999" in msg and FORMAT in msg and "format" in msg


def test_weights_file_missing(run: Path) -> None:
    name = _meta(run)["weights"]["file"]
    (run / name).unlink()
    msg = _error(run)
    assert name in msg and "missing" in msg


def test_weights_file_corrupted(run: Path) -> None:
    path = run / _meta(run)["weights"]["file"]
    data = bytearray(path.read_bytes())
    for i in range(len(data) - 64, len(data) - 32):  # flip bytes inside the tensor data
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    msg = _error(run)
    assert path.name in msg and "hash" in msg and "corrupt" in msg


def _rehash(run: Path) -> None:
    """Record the weight file's current hash, so the loader goes on to read its bytes."""
    import hashlib

    digest = hashlib.sha256((run / _meta(run)["weights"]["file"]).read_bytes()).hexdigest()
    _edit(run, lambda m: m["weights"].update(sha256=digest))


def test_weights_file_unreadable_with_a_matching_hash(run: Path) -> None:
    path = run / _meta(run)["weights"]["file"]
    path.write_bytes(b"this is not a safetensors file")
    _rehash(run)
    msg = _error(run)
    assert path.name in msg and "safetensors" in msg


def test_weights_without_a_hash_are_refused(run: Path) -> None:
    _edit(run, lambda m: m["weights"].pop("sha256"))
    assert "sha256" in _error(run)


def test_weights_that_do_not_fit_the_config(run: Path) -> None:
    z = _meta(run)["config"]["z_dim"]
    _edit(run, lambda m: m["config"].update(z_dim=z + 3))
    msg = _error(run)
    assert "do not fit" in msg and "the model wants" in msg
    assert str(z) in msg and str(z + 3) in msg  # both shapes are named


def test_weights_from_another_family_layout(run: Path, tmp_path: Path) -> None:
    """A weights file with other tensor names is reported as missing/unexpected keys."""
    from safetensors.torch import save_file

    meta = _meta(run)
    tensors = load_file(str(run / meta["weights"]["file"]))
    tensors["extra.weight"] = torch.zeros(2)
    dropped = sorted(tensors)[0]
    tensors.pop(dropped)
    save_file(tensors, str(run / meta["weights"]["file"]))
    _rehash(run)
    msg = _error(run)
    assert "do not fit" in msg and dropped in msg and "extra.weight" in msg


def _files(run: Path) -> set[str]:
    return {p.name for p in run.iterdir() if p.is_file()}


def test_saves_are_atomic_and_leave_only_the_latest_files(cartpole_store: EpisodeStore, tmp_path: Path) -> None:
    model = make_model("ha", cartpole_store)
    opt = adam_steps(model, sampler_for(cartpole_store, model), 1)
    kw = dict(env_id="CartPole-v1", pipeline=cartpole_store.pipeline, optimizer=opt)
    save_checkpoint(tmp_path, model, step=1, **kw)
    first = _meta(tmp_path)
    adam_steps(model, sampler_for(cartpole_store, model), 1)
    save_checkpoint(tmp_path, model, step=2, **kw)
    meta = _meta(tmp_path)
    assert meta["step"] == 2
    latest = {meta["weights"]["file"], meta["optimizer"]["file"]}
    assert first["weights"]["file"] not in latest and first["optimizer"]["file"] not in latest
    assert _files(tmp_path) == {META_FILE} | latest  # old weights gone, no temp files left
    # checkpoint.json names the files that are there, with their hashes, and they load
    loaded, _ = load_checkpoint(tmp_path)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


@pytest.mark.parametrize("family", ["ha", "jepa"])  # jepa: two parameter groups at different rates
def test_optimizer_state_round_trips(family: str, cartpole_store: EpisodeStore, tmp_path: Path) -> None:
    model = make_model(family, cartpole_store)
    sampler = sampler_for(cartpole_store, model, seed=3)
    opt = adam_steps(model, sampler, 2)
    save_checkpoint(tmp_path, model, env_id="CartPole-v1", pipeline=cartpole_store.pipeline, step=2, optimizer=opt)
    loaded, meta = load_checkpoint(tmp_path)
    restored = make_optimizer(loaded, lr=0.123)
    assert load_optimizer_state(meta, restored)
    ours, theirs = opt.state_dict(), restored.state_dict()
    assert ours["state"].keys() == theirs["state"].keys()
    assert len(ours["state"]) == sum(p.requires_grad for p in model.parameters())  # frozen ones get no state
    for idx, st in ours["state"].items():
        assert st.keys() == theirs["state"][idx].keys()
        for key, val in st.items():
            assert torch.equal(torch.as_tensor(val), torch.as_tensor(theirs["state"][idx][key])), (idx, key)
    assert [g["lr"] for g in theirs["param_groups"]] == [g["lr"] for g in ours["param_groups"]]
    assert ours["param_groups"][0]["lr"] == 1e-3
    # The proof: one more identical step from both gives identical weights.
    batch = sampler.sample()
    for m, o in ((model, opt), (loaded, restored)):
        m.train()
        torch.manual_seed(7)
        loss, _ = m.loss(batch)
        o.zero_grad()
        loss.backward()
        o.step()
    for (name, a), b in zip(model.named_parameters(), loaded.parameters(), strict=True):
        assert torch.equal(a, b), f"{name} differs after one step from the restored optimizer"


def test_no_optimizer_saved(cartpole_store: EpisodeStore, tmp_path: Path) -> None:
    model = make_model("ha", cartpole_store)
    save_checkpoint(tmp_path, model, env_id="CartPole-v1", pipeline=cartpole_store.pipeline, step=0)
    _, meta = load_checkpoint(tmp_path)
    assert "optimizer" not in meta
    assert load_optimizer_state(meta, torch.optim.Adam(model.parameters())) is False


def test_resume_continues_from_the_saved_step(run: Path, trained_run: Path) -> None:
    before = _meta(run)
    command = f"wm train --resume {run} --steps {TRAINED_STEPS + 4}"
    out, report = train_run(
        resume=run, overrides={"steps": TRAINED_STEPS + 4}, device="cpu", command=command, checkpoint_every=0
    )
    after = read_meta(out)
    assert out == run and report.step == after["step"] == TRAINED_STEPS + 4
    assert after["command"] == command and after["config"]["steps"] == TRAINED_STEPS + 4
    assert after["budget"]["grad_steps"] == TRAINED_STEPS + 4
    assert after["budget"]["train_seconds"] >= before["budget"]["train_seconds"]
    assert after["weights"]["file"] != before["weights"]["file"]
    # Adam's own step counter proves the saved optimizer state was restored and exactly 4 steps ran.
    adam = load_file(str(run / after["optimizer"]["file"]))
    assert float(adam["0.step"]) == TRAINED_STEPS + 4
    assert not (run / before["weights"]["file"]).exists()
    old = load_file(str(trained_run / before["weights"]["file"]))  # the copy's origin keeps the old weights
    new = load_file(str(run / after["weights"]["file"]))
    assert any(not torch.equal(old[k], new[k]) for k in new), "resumed training changed no weight"


def test_run_dir_holds_no_pickle(trained_run: Path, tmp_path: Path, cartpole_store: EpisodeStore) -> None:
    # A run trained without --data keeps its collected episodes in RUN/data.
    tiny = {"steps": 1, "episodes": 2}
    run, _ = train_run("ha", "CartPole-v1", preset="tiny", overrides=tiny, out=tmp_path / "r", device="cpu")
    for r in (trained_run, run):
        files = [p for p in r.iterdir()]
        assert {p.suffix for p in files if p.is_file()} == {".json", ".safetensors"}, files
        assert [p.name for p in files if p.is_dir()] == (["data"] if r == run else [])
        json.loads((r / META_FILE).read_text())
    data = run / "data"
    assert {p.suffix for p in data.iterdir()} <= {".json", ".npz", ".npy"}
    for p in data.iterdir():
        if p.suffix in (".npz", ".npy"):
            loaded = np.load(p, allow_pickle=False)  # raises on any object (pickled) array
            arrays = [loaded[k] for k in loaded.files] if p.suffix == ".npz" else [loaded]
            assert all(a.dtype != object for a in arrays)
    assert _meta(run)["data"]["dir"] == "data"  # relative: the run finds its data wherever it is copied


def test_a_moved_run_resumes_on_its_own_data(tmp_path: Path) -> None:
    tiny = {"steps": 1, "episodes": 2}
    run, _ = train_run("ha", "CartPole-v1", preset="tiny", overrides=tiny, out=tmp_path / "a" / "r", device="cpu")
    moved = tmp_path / "b" / "r"
    shutil.move(run, moved)
    (tmp_path / "a").rmdir()
    index = (moved / "data" / "index.json").read_text()
    out, report = train_run(resume=moved, overrides={"steps": 2}, device="cpu", checkpoint_every=0)
    assert out == moved and report.step == 2
    assert (moved / "data" / "index.json").read_text() == index  # trained on the episodes it had: none collected
    assert not (tmp_path / "a").exists()
    assert _meta(moved)["data"]["dir"] == "data"


@pytest.mark.parametrize("stores_kind", ["discrete", "box"])
def test_blind_actions_model_hears_no_key_after_save_and_load(
    tmp_path: Path, stores: dict[str, EpisodeStore], stores_kind: str
) -> None:
    """`blind_actions` (the Learn tab's action-blind model) trains through `train_run` with every action zeroed;
    loaded back, its dream at temperature 0 is the same whatever keys are pressed, while the env's spec on disk
    stays the env's."""
    from wm_core.dream import Dream

    store = stores[stores_kind]
    run, _ = train_run(
        "dreamer", store.env_id, preset="tiny", overrides={"steps": 3, "blind_actions": True}, data=store.root,
        out=tmp_path / "blind", device="cpu", command="test", checkpoint_every=0,
    )  # fmt: skip
    meta = read_meta(run)
    assert meta["config"]["blind_actions"] is True and "blind" not in meta["action_spec"]
    model, _ = load_checkpoint(run)
    spec = model.action_spec
    assert spec.blind
    ep = store.load(0)
    streams = [[spec.sample(np.random.default_rng(100 + i)) for _ in range(6)] for i in range(2)]
    assert not all(np.array_equal(a, b) for a, b in zip(*streams)), "the two key streams must differ"
    frames = []
    for actions in streams:
        dream = Dream(model, temperature=0.0, seed=0)
        dream.reset(ep.obs[:5], ep.act[:5])
        frames.append(np.stack([dream.step(a)[0] for a in actions]))
    np.testing.assert_array_equal(frames[0], frames[1])
    assert torch.count_nonzero(spec.encode(np.asarray([spec.sample(np.random.default_rng(3))]))) == 0


def test_json_written_is_strict(tmp_path: Path) -> None:
    """NaN and infinities become null: report.json and checkpoint.json stay readable by any JSON parser."""
    from wm_core.files import atomic_write_json

    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    atomic_write_json(tmp_path / "x.json", {"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": -float("inf")}})
    data = json.loads((tmp_path / "x.json").read_text(), parse_constant=refuse)
    assert data == {"a": None, "b": [1.0, None], "c": {"d": None}}


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "ALE/Pong-v5"])
def test_a_checkpoint_relabelled_to_another_env_is_refused(run: Path, env_id: str) -> None:
    """A CartPole model whose checkpoint.json was edited to name another env: refused before it dreams, by Play's
    session and by the evaluation, in one line (Pendulum's actions differ; Pong has 3 discrete actions)."""
    import wm_core

    meta = json.loads((run / "checkpoint.json").read_text())
    meta["env_id"] = env_id
    (run / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(wm_core.CheckpointError, match="its env_id does not match its model"):
        wm_core.Session(run)
    with pytest.raises(wm_core.CheckpointError, match="its env_id does not match its model"):
        wm_core.evaluate_checkpoint(run, episodes=2)
