"""Example: a two-turn conversation in a session, streamed, then the session's bookkeeping.

    client/python/generate.sh                   # once: generate the stubs
    build/bin/titand --port 50051 &             # a server with the bundled model
    .venv/bin/python client/python/example.py --addr 127.0.0.1:50051
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from titand_client import Client  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", default="127.0.0.1:50051")
    ap.add_argument("--max-tokens", type=int, default=48)
    args = ap.parse_args()
    with Client(args.addr) as c:
        print("health:", c.health())
        info = c.model_info()
        print(f"model: {info.architecture} {info.model_path} ({info.num_layers} layers)")
        session = c.create_session()
        for question in ["What is the capital of France?", "And of Italy?"]:
            print(f"\nuser> {question}\nassistant> ", end="", flush=True)
            last = None
            for msg in c.generate(session_id=session.id, chat=[("user", question)],
                                  max_tokens=args.max_tokens):
                print(msg.text, end="", flush=True)
                last = msg
            print(f"\n  [{last.usage.completion_tokens} tokens, ttft "
                  f"{last.timing.time_to_first_token_seconds * 1000:.0f} ms, session now "
                  f"{last.usage.session_tokens} tokens]")
        print("\nsession:", c.get_session(session.id))
        c.delete_session(session.id)


if __name__ == "__main__":
    main()
