"""Launch the World Model Playground app: python app.py [--host H] [--port P] [--workshop --token T] ...

By default the app serves this machine only (127.0.0.1) without logins. `--workshop` serves a room: it binds to
the network and asks everyone to sign in (the instructor with the token, participants with the logins printed at
start and listed in the Room tab). Serving beyond this machine without a token is refused.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main() -> None:
    """Parse flags, build the Blocks, launch."""
    p = argparse.ArgumentParser(description="World Model Playground: train world models and play in their dreams.")
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1: this machine only; "
                   "0.0.0.0 with --workshop)")  # fmt: skip
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--share", action="store_true", help="ask Gradio for a public share link (needs --token)")
    p.add_argument("--checkpoint-dir", default=None, help="shipped checkpoints to list first (default ./checkpoints)")
    p.add_argument("--runs-dir", default="runs", help="where runs trained in the app are saved (default ./runs)")
    p.add_argument("--workshop", action="store_true", help="serve a room on the network, with logins (needs --token)")
    p.add_argument("--token", default=os.environ.get("WM_TOKEN"), help="the instructor's access token, 8+ "
                   "characters (or set WM_TOKEN); participants' passwords derive from it")  # fmt: skip
    p.add_argument("--participants", type=int, default=30, help="participant logins p01..pNN (default 30)")
    p.add_argument("--batch-ms", type=float, default=3.0, help="players' dream steps of one model arriving within "
                   "this many ms run as one batch (default 3; 0: each steps alone)")  # fmt: skip
    p.add_argument("--train-slots", type=int, default=None, help="training runs at once (default: one per GPU, "
                   "else one per core the players do not use)")  # fmt: skip
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"], help="where players' dreams run "
                   "(default cpu: a batch-1 step takes 1-3 ms there; auto: cuda when torch sees a GPU)")  # fmt: skip
    args = p.parse_args()
    host = args.host or ("0.0.0.0" if args.workshop else "127.0.0.1")

    from playground import Room, build_demo, launch
    from playground.workshop import is_loopback, lan_address
    from wm_core import resolve_device

    try:
        device = str(resolve_device(args.device))
    except ValueError as e:
        p.exit(2, f"app.py: {e}\n")

    public = args.share or not is_loopback(host)
    if (public or args.workshop) and not args.token:
        where = "a public share link" if args.share else f"{host}, which other machines can reach,"
        p.exit(2, f"app.py: refusing to serve on {where} without an access token: pass --token (8+ characters) "
                  "or set WM_TOKEN, or keep the default --host 127.0.0.1\n")  # fmt: skip
    try:
        room = Room(args.token, args.participants, args.runs_dir) if args.token else None
    except ValueError as e:
        p.exit(2, f"app.py: {e}\n")
    demo = build_demo(args.checkpoint_dir, args.runs_dir, args.batch_ms, room, args.train_slots, device)
    if room is not None:
        shown = lan_address() if host in ("0.0.0.0", "::") else host
        print(f"Workshop: share http://{shown}:{args.port}/ with the room. Instructor login: instructor / (your "
              f"token). Participant logins (also in the Room tab):")  # fmt: skip
        print("  " + "   ".join(f"{name} {password}" for name, password in room.logins()))
    auth = {"auth": room.check, "auth_message": "Sign in with the login and password you were given."} if room else {}
    launch(demo, server_name=host, server_port=args.port, share=args.share, **auth)


if __name__ == "__main__":
    main()
