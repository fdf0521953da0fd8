"""The `star` command line: a thin caller of the library (no logic lives here).

    star generate --speech IN.wav --out OUT.wav [--seconds 5] [--steps N] [--cfg S] [--seed N] [--mode e2e|cascade]
    star generate --text "a dog barks" --out OUT.wav [...]
    star generate --batch M.jsonl --out-dir DIR [...]
    star listen IN.wav [--json]
    star bench [--json]
    star serve [--host 127.0.0.1] [--port 8000]
    star data build --corpus DIR --out DIR [--limit N] [--voices ...]
    star data shard --manifest sounds.jsonl --out DIR [--items-per-shard N] [--max-shard-mb M] [--split S]
    star train bridge|generator|vocoder --config FILE
    star eval --manifest M.jsonl --out DIR [--mode e2e|cascade|both]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from star.errors import StarError


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, default=None, help="model folder (default: the embedded model)")


def _add_sampling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=5.0, help="length of the generated audio (1-10 s)")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the model's)")
    p.add_argument("--cfg", type=float, default=None, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=None, help="random seed (same seed, same audio)")
    p.add_argument("--mode", choices=["e2e", "cascade"], default="e2e",
                   help="e2e: speech -> bridge -> generator; cascade: ASR -> text -> generator")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="star", description="STAR: say a sound, hear it (offline).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="generate audio from a spoken prompt, text or a batch manifest")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--speech", type=Path, help="spoken prompt (wav/flac/ogg)")
    src.add_argument("--text", help="text prompt")
    src.add_argument("--batch", type=Path, help='JSONL manifest: {"id", "speech"|"text"} per line')
    p.add_argument("--out", type=Path, help="output wav (with --speech/--text)")
    p.add_argument("--out-dir", type=Path, help="output folder (with --batch): DIR/<id>.wav")
    _add_sampling(p)
    _add_model(p)

    p = sub.add_parser("listen", help="what the bridge heard in a spoken prompt: events with probabilities")
    p.add_argument("speech", type=Path)
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    _add_model(p)

    p = sub.add_parser("bench", help="latency / speed / memory figures, E2E vs cascade, in one run")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--repeats", type=int, default=5)
    _add_model(p)

    p = sub.add_parser("serve", help="HTTP API and web page")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    _add_model(p)

    p = sub.add_parser("data", help="data preparation")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    b = data_sub.add_parser("build", help="captions, scenes and spoken prompts -> JSONL manifests")
    b.add_argument("--corpus", type=Path, required=True, help="folder of clips with a meta.csv")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--limit", type=int, default=None, help="use at most N real clips (balanced)")
    b.add_argument("--voices", nargs="+", default=None,
                   help="TTS engines or engine:voice (espeak, flite; festival = held-out test set only)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--workers", type=int, default=2)
    s = data_sub.add_parser("shard", help="pack a JSONL manifest into WebDataset-style tar shards")
    s.add_argument("--manifest", type=Path, required=True, help="sounds.jsonl (rows with id and audio)")
    s.add_argument("--out", type=Path, required=True, help="folder for shard-000000.tar, ... and shards.json")
    s.add_argument("--items-per-shard", type=int, default=1000)
    s.add_argument("--max-shard-mb", type=float, default=1024.0, help="a shard closes at this size too")
    s.add_argument("--split", default=None, help="only rows of this split (default: all rows)")
    s.add_argument("--seed", type=int, default=0, help="seed of the shuffle before packing")
    s.add_argument("--keep-order", action="store_true", help="keep the manifest order (no shuffle)")
    s.add_argument("--bits", type=int, choices=[16, 24], default=24,
                   help="PCM sample size (16: a third smaller, but near-silence gets the 16-bit noise floor)")
    s.add_argument("--overwrite", action="store_true", help="replace the shards already in --out")

    p = sub.add_parser("train", help="train a stage from a JSON config (resumes from its last checkpoint)")
    p.add_argument("stage", choices=["bridge", "phonetic", "generator", "vocoder"])
    p.add_argument("--config", type=Path, required=True)

    p = sub.add_parser("eval", help="generate for every prompt of a manifest and score the results")
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--mode", choices=["e2e", "cascade", "both", "caption"], default="both",
                   help="caption: the words each prompt speaks, to the text generator (a perfect-ASR ceiling)")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--cfg", type=float, default=None)
    _add_model(p)
    return parser


def _sampling_kwargs(args: argparse.Namespace) -> dict:
    return {"seconds": args.seconds, "steps": args.steps, "cfg": args.cfg, "seed": args.seed, "mode": args.mode}


def cmd_generate(args: argparse.Namespace) -> None:
    from star.pipeline import Pipeline

    if args.batch is not None:
        if args.out_dir is None:
            raise StarError("--batch needs --out-dir")
        pipe = Pipeline.from_pretrained(args.model)
        written = pipe.generate_batch(args.batch, args.out_dir, **_sampling_kwargs(args))
        print(f"wrote {len(written)} files to {args.out_dir}")
        return
    if args.out is None:
        raise StarError("--out is required with --speech/--text")
    pipe = Pipeline.from_pretrained(args.model)
    wav, sr = pipe.generate(speech=args.speech, text=args.text, **_sampling_kwargs(args))
    from star.audio import write_wav

    write_wav(args.out, wav, sr)
    print(f"wrote {args.out} ({len(wav) / sr:.1f} s)")


def cmd_listen(args: argparse.Namespace) -> None:
    from star.pipeline import Pipeline

    result = Pipeline.from_pretrained(args.model).listen(args.speech)
    if args.json:
        print(json.dumps(result.to_dict()))
        return
    if not result.is_request:
        print(result.reason)
        return
    for category, prob in result.events:
        print(f"{category:<16} {prob:.2f}")
    print(f'closest caption: "{result.caption}"')


def cmd_bench(args: argparse.Namespace) -> None:
    from star.eval.bench import run_bench

    report = run_bench(model_dir=args.model, repeats=args.repeats)
    print(json.dumps(report) if args.json else report_text(report))


def report_text(report: dict) -> str:
    return "\n".join(f"{k}: {v}" for k, v in report.items())


def cmd_serve(args: argparse.Namespace) -> None:
    from star.serve.app import serve

    serve(host=args.host, port=args.port, model_dir=args.model)


def cmd_data(args: argparse.Namespace) -> None:
    if args.data_command == "shard":
        from star.data.shards import write_shards

        paths = write_shards(args.manifest, args.out, items_per_shard=args.items_per_shard,
                             max_shard_bytes=int(args.max_shard_mb * 2**20), split=args.split,
                             seed=None if args.keep_order else args.seed, bits=args.bits,
                             overwrite=args.overwrite)
        print(f"wrote {len(paths)} shards to {args.out}")
        return
    from star.data.build import build_dataset

    out = build_dataset(args.corpus, args.out, limit=args.limit, voices=args.voices, seed=args.seed,
                        workers=args.workers)
    print(f"manifests written to {out}")


def cmd_train(args: argparse.Namespace) -> None:
    if not args.config.is_file():
        raise StarError(f"{args.config}: no such config file")
    if args.stage == "bridge":
        from star.train.bridge_task import train_bridge as train
    elif args.stage == "phonetic":
        from star.train.phonetic_task import train_phonetic as train
    elif args.stage == "generator":
        from star.train.speech_condition import train_any_generator as train
    else:
        from star.train.vocoder_task import train_vocoder as train
    print(json.dumps(train(args.config)))


def cmd_eval(args: argparse.Namespace) -> None:
    from star.eval.evaluator import run_eval

    tables = run_eval(args.manifest, args.out, mode=args.mode, model_dir=args.model, limit=args.limit,
                      steps=args.steps, cfg=args.cfg)
    print(json.dumps(tables))


COMMANDS = {
    "generate": cmd_generate,
    "listen": cmd_listen,
    "bench": cmd_bench,
    "serve": cmd_serve,
    "data": cmd_data,
    "train": cmd_train,
    "eval": cmd_eval,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except StarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("STAR_DEBUG"):
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (set STAR_DEBUG=1 for details)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
