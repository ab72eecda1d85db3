"""Workshop mode: no serving beyond this machine without a token, no page or API without a login, participants
kept apart (no route opens another's run), the instructor's gallery, and a training queue that never runs more
jobs than it has slots. The app is the real one, launched in this process; the calls are real HTTP."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import pytest
import requests
import torch
from gradio.helpers import special_args
from gradio_client import Client
from test_app_browser import free_port
from test_hub import train_tiny

from playground import Room, build_demo, launch
from playground.context import AppContext
from playground.jobs import JobQueue, TrainJob
from playground.workshop import INSTRUCTOR, participant_token

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "room-token-for-tests"


@pytest.mark.parametrize(
    "flags", [["--host", "0.0.0.0"], ["--workshop"], ["--share"], ["--workshop", "--token", "short"]]
)
def test_refuses_to_serve_the_network_without_a_token(flags: list[str]) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}  # no WM_TOKEN from the caller's environment
    proc = subprocess.run([sys.executable, "app.py", *flags], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and ("token" in lines[0]), proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_app_refuses_a_gpu_it_does_not_have() -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    proc = subprocess.run([sys.executable, "app.py", "--device", "cuda"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cuda" in lines[0] and "no CUDA GPU" in lines[0], proc.stderr


@pytest.fixture(scope="module")
def room_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(shipped dir with one tiny run, runs dir where p01 and p02 each own a run, p02's run)."""
    root = tmp_path_factory.mktemp("room")
    tiny = train_tiny(root / "shipped" / "ha-cartpole")
    runs = root / "runs"
    for who in ("p01", "p02"):
        shutil.copytree(tiny, runs / "participants" / who / f"{who}-run")
    return root / "shipped", runs, runs / "participants" / "p02" / "p02-run"


@contextmanager
def serve_room(shipped: Path, runs: Path) -> Iterator[str]:
    room = Room(TOKEN, participants=4, runs=runs)
    demo = build_demo(shipped, runs, room=room, slots=1)
    port = free_port()
    launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, auth=room.check)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def room_url(room_dirs: tuple[Path, Path, Path]) -> Iterator[str]:
    with serve_room(room_dirs[0], room_dirs[1]) as url:
        yield url


def test_no_page_and_no_api_without_a_login(room_url: str) -> None:
    page = requests.get(room_url, timeout=30).text
    # The login form, not the app: an empty layout, and no API description (Gradio embeds one whose defaults and
    # choices are the server's paths: the shipped checkpoints' folder).
    assert '"auth_required":true' in page and '"components":[]' in page
    assert "window.gradio_api_info = null;" in page
    assert "p01-run" not in page and "p02-run" not in page and "ha-cartpole" not in page and "/tmp" not in page
    for path in ("config", "gradio_api/info"):
        assert requests.get(room_url + path, timeout=30).status_code == 401, path
    tick = {"session_hash": "x", "component_id": 1, "fn_name": "tick", "data": {"client": "x", "keys": []}}
    assert requests.post(room_url + "gradio_api/component_server", json=tick, timeout=30).status_code == 401
    join = {"data": [], "fn_index": 0, "session_hash": "x"}
    assert requests.post(room_url + "gradio_api/queue/join", json=join, timeout=30).status_code == 401
    s = requests.Session()
    assert s.post(room_url + "login", data={"username": "p01", "password": TOKEN}, timeout=30).status_code != 200
    assert s.post(room_url + "login", data={"username": "p09", "password": participant_token(TOKEN, "p09")},
                  timeout=30).status_code != 200  # fmt: skip
    assert s.post(room_url + "login", data={"username": "p01", "password": participant_token(TOKEN, "p01")},
                  timeout=30).status_code == 200  # fmt: skip
    assert s.get(room_url + "config", timeout=30).status_code == 200
    signed_in = s.get(room_url, timeout=30).text  # the app itself, with its API description
    assert '"auth_required":true' not in signed_in and "window.gradio_api_info = null;" not in signed_in
    assert "ha-cartpole" in signed_in


def test_a_participant_reaches_no_other_participants_run(room_url: str, room_dirs: tuple[Path, Path, Path]) -> None:
    other = str(room_dirs[2])
    client = Client(room_url, auth=("p01", participant_token(TOKEN, "p01")), verbose=False)
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    takes_runs = [name for name, spec in api.items() if any(p["parameter_name"] in ("run", "runs", "path", "paths")
                                                             for p in spec["parameters"])]  # fmt: skip
    assert len(takes_runs) >= 5, f"expected the tabs' run-taking endpoints, found {takes_runs}"
    for name in takes_runs:
        params = api[name]["parameters"]
        args = []
        for p in params:
            many = p["parameter_name"] in ("runs", "paths")
            if p["parameter_name"] in ("run", "runs", "path", "paths"):
                args.append([other] if many else other)
            else:
                args.append(p.get("parameter_default"))
        with pytest.raises(Exception, match="not in the list of choices"):
            client.predict(*args, api_name=name)
    train = [p["parameter_name"] for p in api["/run"]["parameters"]]
    values = {"family": "ha", "env": "CartPole-v1", "preset": "tiny", "device": "cpu", "steps": "", "frames": "",
              "data": str(room_dirs[2] / "data"), "advanced": ""}  # fmt: skip
    with pytest.raises(Exception, match="not in the list of choices"):
        client.predict(*[values[k] for k in train], api_name="/run")


def test_each_login_lists_its_own_runs_and_the_gallery(room_dirs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    shipped, runs, _ = room_dirs
    runs_copy = tmp_path / "runs"
    shutil.copytree(runs, runs_copy)
    room = Room(TOKEN, participants=4, runs=runs_copy)
    ctx = AppContext(shipped, runs_copy, room=room)
    names = lambda user: {Path(path).name for _, path in ctx.checkpoints(user)}  # noqa: E731
    assert names("p01") == {"ha-cartpole", "p01-run"}
    assert names("p02") == {"ha-cartpole", "p02-run"}
    assert names(INSTRUCTOR) == {"ha-cartpole", "p01-run", "p02-run"}
    assert names(None) == {"ha-cartpole"}
    published = room.publish(runs_copy / "participants" / "p02" / "p02-run")
    assert published.name == "p02-p02-run" and (published / "checkpoint.json").exists()
    assert "p02-p02-run" in names("p01") and "p02-p02-run" in names("p03")
    assert not (published / "data").exists(), "the gallery copy carries the run's training data"
    with pytest.raises(ValueError, match="already in the gallery"):
        room.publish(runs_copy / "participants" / "p02" / "p02-run")
    assert ctx.runs_of("p03") == runs_copy / "participants" / "p03"
    with pytest.raises(PermissionError):
        room.runs_of("../p01")


def test_every_refresh_button_keeps_the_login(room_dirs: tuple[Path, Path, Path]) -> None:
    """Refresh lists what the signed-in participant may open: Compare's Refresh once listed as nobody, so a
    participant's own runs left its list."""
    shipped, runs, _ = room_dirs
    demo = build_demo(shipped, runs, room=Room(TOKEN, participants=4, runs=runs), slots=1)
    buttons = {i for i, b in demo.blocks.items() if isinstance(b, gr.Button) and "Refresh" in str(b.value)}
    handlers = [f for f in demo.fns.values() if any(t[0] in buttons for t in f.targets)]
    shipped_run = str(shipped / "ha-cartpole")
    is_list = lambda o: isinstance(o, gr.Dropdown) and shipped_run in [c[1] for c in o.choices]  # noqa: E731
    lists = [f for f in handlers if any(map(is_list, f.outputs))]  # checkpoint lists, not the Room's job list
    assert len(lists) >= 2, "expected the Play and Compare Refresh buttons"
    for f in lists:
        out = f.fn(*special_args(f.fn, [], gr.Request(username="p01"))[0])  # what Gradio passes a signed-in page
        update = next(o for o in (out if isinstance(out, tuple) else (out,)) if isinstance(o, dict))
        names = {Path(path).name for _, path in update["choices"]}
        assert "p01-run" in names and "p02-run" not in names, (f.name, names)


def test_the_queue_never_trains_more_runs_than_its_slots(tmp_path: Path) -> None:
    queue = JobQueue(slots=1)
    jobs = [TrainJob("ha", "CartPole-v1", "tiny", {"steps": 40}, "cpu", tmp_path / f"user{i}") for i in range(3)]
    seen, stop = [], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append((len(queue.running), [queue.place(j) for j in jobs]))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    for i, job in enumerate(jobs):
        job.start(queue, f"job{i}")
    deadline = time.monotonic() + 300
    while any(j.alive for j in jobs) and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    watcher.join()
    assert [j.phase for j in jobs] == ["done"] * 3, [j.error for j in jobs]
    assert max(running for running, _ in seen) == 1 and queue.peak == 1
    assert any(places[2] == 2 for _, places in seen), "the last job was never shown second in line"


def test_a_waiting_job_can_be_cancelled(tmp_path: Path) -> None:
    queue = JobQueue(slots=1)
    first = TrainJob("ha", "CartPole-v1", "tiny", {"steps": 200}, "cpu", tmp_path / "a").start(queue, "a")
    second = TrainJob("ha", "CartPole-v1", "tiny", {"steps": 200}, "cpu", tmp_path / "b").start(queue, "b")
    assert queue.place(second) == 1
    assert "Stopping" in queue.cancel("b")
    second.thread.join(timeout=60)
    assert second.phase == "stopped" and not Path(second.run).exists(), "a cancelled job left a run behind"
    first.stop()
    first.thread.join(timeout=120)
    assert first.phase in ("stopped", "done") and queue.running == [] and queue.waiting == []


def test_a_participants_recorded_play_goes_to_their_own_folder(
    room_dirs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from playground.hub import SessionHub

    hub = SessionHub(data_dir=tmp_path / "shared")
    room = Room(TOKEN, participants=4, runs=tmp_path / "runs")
    mine = room.runs_of("p01") / "play-data"
    hub.start("page", str(room_dirs[0] / "ha-cartpole"), real=True, data_dir=mine)
    said = hub.control("page", "record_data", True)
    assert str(mine / "CartPole-v1") in said and not (tmp_path / "shared").exists()
    hub.release("page")
