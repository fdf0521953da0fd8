"""Turning an HTTP request into checked pipeline inputs, without touching the filesystem.

Owns: reading a body in chunks up to a byte limit, parsing multipart/form-data in memory (client file
names are ignored), the generate options (unknown fields are an error), and the wav-header duration
probe that refuses a too-long prompt before anything is decoded.
"""

from __future__ import annotations

import io
import json
import struct
from typing import Literal
from urllib.parse import parse_qsl

import soundfile as sf
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

MAX_PARTS = 16  # a form has at most 7 fields; more parts is abuse, not a prompt


class HttpError(Exception):
    """A client error with its HTTP status; the app turns it into `{"error": message}`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class GenerateOptions(BaseModel):
    """Options of POST /v1/generate (form fields or JSON keys). Ranges are the pipeline's to check."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    text: str | None = None
    seconds: float | None = None
    steps: int | None = None
    cfg: float | None = None
    seed: int | None = Field(default=None, ge=0, lt=2**32)
    mode: Literal["e2e", "cascade"] = "e2e"


def describe_validation(exc: ValidationError) -> str:
    """One readable line from pydantic's error list."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"]) or "body"
        parts.append(f"unknown field {where!r}" if err["type"] == "extra_forbidden" else f"{where}: {err['msg']}")
    return "; ".join(parts)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, read chunk by chunk and abandoned as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HttpError(413, f"upload is {int(declared):,} bytes, the limit is {limit:,} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HttpError(413, f"upload is larger than the limit of {limit:,} bytes")
    return bytes(body)


def parse_multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    """multipart/form-data -> {field name: raw bytes}, all in memory. Duplicate or nameless parts are errors."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise HttpError(422, "multipart body without a boundary")
    parts: list[tuple[dict[bytes, bytes], bytearray]] = []
    field, value = bytearray(), bytearray()
    ended = []

    def on_part_begin() -> None:
        if len(parts) >= MAX_PARTS:
            raise HttpError(422, f"too many form fields (at most {MAX_PARTS})")
        parts.append(({}, bytearray()))

    def on_header_end() -> None:
        parts[-1][0][bytes(field).strip().lower()] = bytes(value).strip()
        field.clear()
        value.clear()

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": lambda data, start, end: field.extend(data[start:end]),
        "on_header_value": lambda data, start, end: value.extend(data[start:end]),
        "on_header_end": on_header_end,
        "on_part_data": lambda data, start, end: parts[-1][1].extend(data[start:end]),
        "on_end": lambda: ended.append(True),
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise HttpError(422, f"malformed multipart body ({exc})") from None
    if not ended:
        raise HttpError(422, "multipart body is incomplete (no closing boundary)")
    fields: dict[str, bytes] = {}
    for headers, data in parts:
        _, disposition = parse_options_header(headers.get(b"content-disposition", b"").decode("latin-1"))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        if not name:
            raise HttpError(422, "multipart part without a field name")
        if name in fields:
            raise HttpError(422, f"field {name!r} given more than once")
        fields[name] = bytes(data)
    return fields


def parse_urlencoded(body: bytes) -> dict[str, bytes]:
    """application/x-www-form-urlencoded -> {field: bytes}; a repeated field is an error."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_PARTS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise HttpError(422, f"malformed form body ({exc})") from None
    fields: dict[str, bytes] = {}
    for name, value in pairs:
        if name in fields:
            raise HttpError(422, f"field {name!r} given more than once")
        fields[name] = value.encode()
    return fields


def form_options(fields: dict[str, bytes]) -> GenerateOptions:
    """Text form fields -> options; empty fields mean 'use the default' (as browsers send them)."""
    values = {}
    for name, raw in fields.items():
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HttpError(422, f"field {name!r} is not UTF-8 text") from None
        if text.strip() or name not in GenerateOptions.model_fields:
            values[name] = text
    return options_from(values)


def json_options(body: bytes) -> GenerateOptions:
    if not body.strip():
        raise HttpError(422, "empty body: send a JSON object such as {\"text\": \"a dog barks\"}")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HttpError(422, f"body is not valid JSON ({exc})") from None
    except RecursionError:
        raise HttpError(422, "JSON body is nested too deeply") from None
    if not isinstance(data, dict):
        raise HttpError(422, "JSON body must be an object")
    return options_from(data)


def options_from(values: dict) -> GenerateOptions:
    try:
        return GenerateOptions.model_validate(values)
    except ValidationError as exc:
        raise HttpError(422, describe_validation(exc)) from None


def wav_header_seconds(data: bytes) -> float | None:
    """Duration a RIFF/WAVE header claims, or None for other formats. A lying header (a few bytes that
    say 'two hours') is refused on the claim; a streaming header (size 0 or 0xFFFFFFFF) falls back to the
    bytes actually present."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, rate, block = 12, 0, 0
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if chunk == b"fmt " and pos + 24 <= len(data):
            rate = struct.unpack("<I", data[pos + 12:pos + 16])[0]
            block = struct.unpack("<H", data[pos + 20:pos + 22])[0]  # bytes per frame, all channels
        elif chunk == b"data":
            if rate <= 0 or block <= 0:
                return None  # let the decoder explain what is wrong
            present = len(data) - pos - 8
            claimed = present if size in (0, 0xFFFFFFFF) else size
            return claimed / (rate * block)
        pos += 8 + size + (size & 1)
    return None


def claimed_seconds(data: bytes) -> float | None:
    """Duration from the header alone (wav: the RIFF claim; flac/ogg: libsndfile's header read), or None
    when the bytes are not audio it can identify (the decoder then says what is wrong)."""
    seconds = wav_header_seconds(data)
    if seconds is not None:
        return seconds
    try:
        return sf.info(io.BytesIO(data)).duration
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None
