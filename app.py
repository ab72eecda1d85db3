"""Launch the World Model Playground app: python app.py [--host H] [--port P] [--share] [--checkpoint-dir D]."""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main() -> None:
    """Parse flags, build the Blocks, launch."""
    p = argparse.ArgumentParser(description="World Model Playground: train world models and play in their dreams.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--share", action="store_true", help="ask Gradio for a public share link")
    p.add_argument("--checkpoint-dir", default=None, help="shipped checkpoints to list first (default ./checkpoints)")
    p.add_argument("--runs-dir", default="runs", help="where runs trained in the app are saved (default ./runs)")
    args = p.parse_args()

    from playground import build_demo, launch

    demo = build_demo(args.checkpoint_dir, args.runs_dir)
    launch(demo, server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
