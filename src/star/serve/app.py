"""The HTTP API and the web page: a thin caller of `Pipeline` (no model logic lives here).

    POST /v1/generate   multipart (field `speech` = a spoken prompt, or `text`) or JSON {"text": ...};
                        options seconds/steps/cfg/seed/mode; audio/wav, or JSON with a link (?format=json)
    POST /v1/listen     multipart `speech` -> what the bridge heard (events with probabilities)
    GET  /v1/audio/<id>.wav|.png   a clip made by ?format=json, and its spectrogram
    GET  /healthz, GET /openapi.json, GET / (the page)

Every error is JSON `{"error": "..."}`: bad input 4xx (422, 413 for size and duration, 415, 429 when the
queue is full), 504 when a request misses its deadline. Uploads stay in memory; clips get server-made ids.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import sys
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from star.audio.io import SAMPLE_RATE, load_audio
from star.errors import AudioError, StarError
from star.pipeline import check_inputs, generator_kind
from star.serve.inputs import (
    GenerateOptions,
    HttpError,
    claimed_seconds,
    form_options,
    json_options,
    parse_multipart,
    parse_urlencoded,
    read_body,
)
from star.serve.spectrogram import spectrogram_png
from star.serve.store import ID_PATTERN, AudioStore
from star.serve.worker import ModelWorker, QueueFull

STATIC = Path(__file__).parent / "static"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# The page loads nothing from elsewhere; say so to the browser too.
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
log = logging.getLogger("star.serve")


@dataclass
class ServeSettings:
    """Server limits. Prompt limits (seconds, steps, speech length) come from the model's PipelineConfig."""

    model_dir: str | Path | None = None
    max_upload_bytes: int = 10_000_000
    queue_size: int = 8  # requests waiting behind the running one; more get 429
    timeout_s: float = 60.0  # per request, waiting included
    store_items: int = 64  # clips kept for download (?format=json), least recently used evicted
    warmup: bool = True  # make one tiny call of each path at startup (see warm_up)


def _options_schema(with_speech: bool) -> dict:
    schema = GenerateOptions.model_json_schema()
    if with_speech:
        schema["properties"] = {"speech": {"type": "string", "format": "binary"}, **schema["properties"]}
    return schema


GENERATE_DOC = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": _options_schema(True)},
    "application/json": {"schema": _options_schema(False)},
}}}
LISTEN_DOC = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "properties": {"speech": {"type": "string", "format": "binary"}}, "required": ["speech"],
}}}}}
ERRORS_DOC = {code: {"description": why, "content": {"application/json": {"example": {"error": "..."}}}}
              for code, why in [(413, "upload or speech too long"), (415, "unsupported content type"),
                                (422, "bad input"), (429, "queue full"), (504, "deadline missed")]}


def create_app(pipeline_factory: Callable[[], Any] | None = None, settings: ServeSettings | None = None) -> FastAPI:
    """The ASGI app. `pipeline_factory()` is called once, on the model thread, at startup."""
    settings = settings or ServeSettings()
    if pipeline_factory is None:
        def pipeline_factory() -> Any:
            from star.pipeline import Pipeline

            return Pipeline.from_pretrained(settings.model_dir)

    def load() -> Any:
        pipe = pipeline_factory()
        if settings.warmup:
            warm_up(pipe)
        return pipe

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        worker = ModelWorker(load, settings.queue_size)
        worker.start()
        await asyncio.to_thread(worker.wait_ready)
        app.state.worker, app.state.store = worker, AudioStore(settings.store_items)
        try:
            yield
        finally:
            worker.stop()
            app.state.store.close()

    app = FastAPI(title="STAR", summary="Say a sound, hear it: speech-to-audio generation, offline.",
                  version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    _add_error_handlers(app)

    async def run_model(request: Request, fn: Callable[[Any], Any]) -> Any:
        try:
            return await request.app.state.worker.run(fn, settings.timeout_s)
        except QueueFull:
            raise HttpError(429, f"busy: {settings.queue_size} requests are already waiting, retry shortly") from None
        except TimeoutError:
            raise HttpError(504, f"the request took longer than {settings.timeout_s:g} s") from None

    async def speech_from(data: bytes, pipe: Any, allow_silent: bool = False) -> np.ndarray:
        limit = pipe.cfg.max_speech_seconds
        seconds = claimed_seconds(data)
        if seconds is not None and seconds > limit:
            raise HttpError(413, f"speech is {seconds:.0f} s long, the limit is {limit:g} s")
        try:
            return await run_in_threadpool(lambda: load_audio(data, SAMPLE_RATE, max_seconds=limit,
                                                              allow_silent=allow_silent))
        except AudioError as exc:  # name the upload as the user knows it, without libsndfile's object reprs
            raise HttpError(422, re.sub(r"Error opening <[^>]*>: ", "", str(exc)).replace("<upload>", "speech"))

    @app.post("/v1/generate", openapi_extra=GENERATE_DOC, responses={
        200: {"description": "audio/wav, or JSON with a link when format=json",
              "content": {"audio/wav": {}, "application/json": {}}}, **ERRORS_DOC})
    async def generate(request: Request, format: Literal["wav", "json"] = "wav") -> Response:
        started = time.perf_counter()
        opts, speech = await _read_generate(request, settings.max_upload_bytes)
        pipe = request.app.state.worker.pipeline
        cfg = pipe.cfg
        sampling = cfg.sampling(generator_kind(speech is not None, opts.mode))
        check_inputs(cfg, speech=speech, text=opts.text, mode=opts.mode,
                     seconds=cfg.seconds if opts.seconds is None else opts.seconds,
                     steps=sampling["steps"] if opts.steps is None else opts.steps,
                     guidance=sampling["cfg"] if opts.cfg is None else opts.cfg)
        wav = None if speech is None else await speech_from(speech, pipe)
        want_heard = format == "json" and wav is not None

        def job(pipe: Any) -> tuple:
            began = time.perf_counter()
            source = None if wav is None else (wav, SAMPLE_RATE)
            out, sr = pipe.generate(speech=source, text=opts.text, seconds=opts.seconds, steps=opts.steps,
                                    cfg=opts.cfg, seed=opts.seed, mode=opts.mode)
            timings, transcript = dict(pipe.last_timings, model_start=began), pipe.last_transcript
            heard = None
            if want_heard:
                t0 = time.perf_counter()
                heard = _plain(pipe.listen(source).to_dict())
                timings["listen_s"] = time.perf_counter() - t0
            return out, sr, timings, heard, transcript

        submitted = time.perf_counter()
        out, sr, timings, heard, transcript = await run_model(request, job)
        timings["queue_s"] = timings.pop("model_start") - submitted  # waiting behind other requests
        body = _wav_bytes(out, sr)
        if format == "wav":
            return Response(body, media_type="audio/wav", headers={"X-Star-Seconds": f"{len(out) / sr:.3f}"})
        clip_id = await run_in_threadpool(request.app.state.store.add, body)
        timings = {k: round(float(v), 4) for k, v in timings.items() if isinstance(v, (int, float))}
        timings["server_s"] = round(time.perf_counter() - started, 4)
        return JSONResponse({
            "id": clip_id, "url": f"/v1/audio/{clip_id}.wav", "spectrogram": f"/v1/audio/{clip_id}.png",
            "seconds": round(len(out) / sr, 4), "sample_rate": sr, "mode": opts.mode,
            "timings": timings, "heard": heard, "transcript": transcript,
        })

    @app.post("/v1/listen", openapi_extra=LISTEN_DOC, responses=ERRORS_DOC)
    async def listen(request: Request) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            raise HttpError(415, "send multipart/form-data with the spoken prompt in the field 'speech'")
        fields = parse_multipart(await read_body(request, settings.max_upload_bytes), content_type)
        unknown = sorted(set(fields) - {"speech"})
        if unknown:
            raise HttpError(422, f"unknown field {unknown[0]!r} (only 'speech')")
        if "speech" not in fields:
            raise HttpError(422, "missing the field 'speech' (a spoken prompt)")
        # silence is a fair question here: the answer is "no sound request heard"
        wav = await speech_from(fields["speech"], request.app.state.worker.pipeline, allow_silent=True)
        heard = await run_model(request, lambda pipe: _plain(pipe.listen((wav, SAMPLE_RATE)).to_dict()))
        return JSONResponse(heard)

    @app.get("/v1/audio/{name}", responses={200: {"content": {"audio/wav": {}, "image/png": {}}}})
    async def audio(request: Request, name: str) -> Response:
        clip_id, _, suffix = name.partition(".")
        store: AudioStore = request.app.state.store
        wav_path, path = store.path(clip_id, "wav"), store.path(clip_id, suffix)
        if not ID_PATTERN.fullmatch(clip_id) or path is None or wav_path is None:
            raise HttpError(404, f"no clip {name!r}; the server keeps the last {settings.store_items} clips")
        try:
            if suffix == "png" and not path.exists():
                path.write_bytes(await run_in_threadpool(spectrogram_png, wav_path.read_bytes()))
            data = path.read_bytes()
        except FileNotFoundError:  # evicted meanwhile
            raise HttpError(404, f"clip {name!r} is no longer kept") from None
        return Response(data, media_type="audio/wav" if suffix == "wav" else "image/png")

    @app.get("/healthz")
    async def healthz(request: Request) -> dict:
        return {"status": "ok", "waiting": request.app.state.worker.waiting, "clips": len(request.app.state.store)}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_CSP})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def warm_up(pipe: Any) -> None:
    """The pipeline loads its encoders on first use (seconds each): pay that at startup, not on a user's
    first click. The cascade's ASR is left to load on its first use (it is the slow baseline)."""
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    hum = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SAMPLE_RATE  # 1 s, not silent
    seconds = pipe.cfg.min_seconds
    pipe.listen(hum)  # speech encoder, voice activity detector, bridge
    pipe.generate(speech=hum, seconds=seconds, steps=1, seed=0)  # + generator, vocoder
    pipe.generate(text="warm up", seconds=seconds, steps=1, seed=0)  # text encoder, text generator


async def _read_generate(request: Request, limit: int) -> tuple[GenerateOptions, bytes | None]:
    """(options, speech bytes or None) from a multipart or JSON body."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        fields = parse_multipart(await read_body(request, limit), content_type)
        speech = fields.pop("speech", None)
        return form_options(fields), speech
    media_type = content_type.split(";")[0].strip().lower()
    if media_type == "application/json":
        return json_options(await read_body(request, limit)), None
    if media_type == "application/x-www-form-urlencoded":  # curl -d text=... : text prompts only
        return form_options(parse_urlencoded(await read_body(request, limit))), None
    raise HttpError(415, "send multipart/form-data (field 'speech' or 'text') or application/json {\"text\": ...}")


def _wav_bytes(wav: np.ndarray, sr: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _plain(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars and arrays (which json cannot write) become Python numbers and lists."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    return obj


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HttpError)
    async def http_error(_: Request, exc: HttpError) -> JSONResponse:
        return _error(exc.status, exc.message, {"Retry-After": "1"} if exc.status == 429 else None)

    @app.exception_handler(StarError)  # also AudioError: a prompt the user can fix
    async def star_error(_: Request, exc: StarError) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        return _error(422, where or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_exception(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return _error(500, f"internal error ({type(exc).__name__}); the server log has the details")


def serve(host: str = "127.0.0.1", port: int = 8000, model_dir: str | Path | None = None,
          settings: ServeSettings | None = None) -> None:
    """Load the model, then serve the API and the page until interrupted (`star serve`)."""
    import uvicorn

    from star.pipeline import Pipeline

    settings = settings or ServeSettings(model_dir=model_dir)
    pipe = Pipeline.from_pretrained(settings.model_dir)  # a bad model folder fails here, as one clear line
    if host not in LOOPBACK:
        print(f"warning: listening on {host}: anyone who can reach this address can use the server",
              file=sys.stderr)
    print(f"STAR: open http://{'[' + host + ']' if ':' in host else host}:{port}/", file=sys.stderr)
    uvicorn.run(create_app(lambda: pipe, settings), host=host, port=port, log_level="info")
