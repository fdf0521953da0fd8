"""Hostile and odd input over real HTTP: each gets a clear 4xx JSON error or a sane result, and the server
stays up (a /healthz after every case). Runs against the pipeline double (fast) and, for a subset, the real
default model once it exists."""

from __future__ import annotations

import io
import struct

import httpx
import numpy as np
import pytest
import soundfile as sf
from serve_helpers import decoded_seconds, fake_app, live_server, tone, wav_bytes

from star.serve import ServeSettings

SR = 16000
LIMIT = 1_000_000  # a small upload limit keeps the oversized cases cheap


@pytest.fixture(scope="module")
def url():
    app, _ = fake_app(ServeSettings(max_upload_bytes=LIMIT))
    with live_server(app) as base:
        yield base


@pytest.fixture(scope="module")
def client():
    with httpx.Client(timeout=30) as c:
        yield c


def _two_hour_header() -> bytes:
    """A real 0.1 s wav whose header claims two hours of data."""
    data = bytearray(wav_bytes(tone(0.1)))
    at = data.find(b"data")
    data[at + 4:at + 8] = struct.pack("<I", 2 * 3600 * SR * 2)
    return bytes(data)


def _truncated_data() -> bytes:
    """Header says 1 s, the body holds 0.2 s (an interrupted upload or copy)."""
    return wav_bytes(tone(1.0))[: 44 + int(0.2 * SR) * 2]


def _zero_samples() -> bytes:
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", SR, 1, format="WAV", subtype="PCM_16"):
        pass
    return buf.getvalue()


def _nan_float() -> bytes:
    wav = tone(1.0)
    wav[100:200] = np.nan
    return wav_bytes(wav, subtype="FLOAT")


def _chord() -> np.ndarray:
    return tone(3.0, freqs=(261.63, 329.63, 392.0, 523.25), amp=0.5)  # C major, no speech in it


# name -> (speech bytes, allowed statuses, a word the error must contain)
SPEECH_CASES = {
    "not_audio": (b"this is plainly not a sound file " * 20, {422}, "not a readable audio"),
    "empty_file": (b"", {422}, "empty"),
    "truncated_header": (wav_bytes(tone(1.0))[:30], {422}, "audio"),
    "truncated_data": (_truncated_data(), {200, 422}, ""),
    "zero_samples": (_zero_samples(), {422}, "no samples"),
    "nan_samples": (_nan_float(), {422}, "NaN"),
    "two_hour_header": (_two_hour_header(), {413}, "7200 s long"),
    "too_long_real": (wav_bytes(tone(31.0)), {413}, "limit is 30"),
    "rate_8k": (wav_bytes(tone(1.5, 8000), 8000), {200}, ""),
    "rate_96k": (wav_bytes(tone(1.5, 96000), 96000), {200}, ""),
    "stereo": (wav_bytes(np.stack([tone(1.5), tone(1.5, freqs=(660.0,))], axis=1)), {200}, ""),
    "silence": (wav_bytes(np.zeros(SR * 2, np.float32)), {422}, "silent"),
    "music_chord": (wav_bytes(_chord()), {200, 422}, ""),
    "flac": (b"", {200}, ""),  # filled below: a non-wav container soundfile reads
}
_flac = io.BytesIO()
sf.write(_flac, tone(1.0), SR, format="FLAC")
SPEECH_CASES["flac"] = (_flac.getvalue(), {200}, "")

# name -> (httpx.request kwargs, allowed statuses, a word the error must contain)
FORM_CASES = {
    "no_body_no_type": ({}, {415}, "multipart"),
    "empty_json": ({"content": b"", "headers": {"content-type": "application/json"}}, {422}, "empty body"),
    "bad_json": ({"content": b"{text: dog", "headers": {"content-type": "application/json"}}, {422}, "JSON"),
    "json_deep": ({"content": b"[" * 200_000 + b"]" * 200_000, "headers": {"content-type": "application/json"}},
                  {422}, "nested"),
    "json_text_number": ({"json": {"text": 42}}, {422}, "text"),
    "json_list": ({"json": ["a dog barks"]}, {422}, "object"),
    "json_unknown_key": ({"json": {"text": "a dog", "volume": 11}}, {422}, "unknown field 'volume'"),
    "json_nan_seconds": ({"content": b'{"text": "a dog", "seconds": NaN}',
                          "headers": {"content-type": "application/json"}}, {422}, "seconds"),
    "json_speech_and_text": ({"json": {"text": "a dog", "speech": "x.wav"}}, {422}, "unknown field 'speech'"),
    "form_unknown_field": ({"files": {"speech": ("a.wav", wav_bytes(tone(1.0)))}, "data": {"foo": "1"}},
                           {422}, "unknown field 'foo'"),
    "form_speech_and_text": ({"files": {"speech": ("a.wav", wav_bytes(tone(1.0)))}, "data": {"text": "dog"}},
                             {422}, "exactly one"),
    "form_nothing": ({"files": {"x": ("", b"")}, "data": {}}, {422}, "unknown field 'x'"),
    "form_many_parts": ({"files": {"speech": ("a.wav", b"x")}, "data": {f"f{i}": "1" for i in range(40)}},
                        {422}, "too many"),
    "form_duplicate": ({"files": [("speech", ("a.wav", b"x")), ("speech", ("b.wav", b"y"))]}, {422}, "more than once"),
    "no_prompt": ({"json": {"seconds": 2}}, {422}, "exactly one"),
    "empty_text": ({"json": {"text": "   "}}, {422}, "empty"),
    "long_text": ({"json": {"text": "dog " * 200}}, {422}, "500"),
    "negative_seconds": ({"json": {"text": "a dog", "seconds": -3}}, {422}, "seconds"),
    "huge_seconds": ({"json": {"text": "a dog", "seconds": 1e9}}, {422}, "seconds"),
    "steps_10000": ({"json": {"text": "a dog", "steps": 10000}}, {422}, "steps"),
    "steps_fraction": ({"json": {"text": "a dog", "steps": 2.5}}, {422}, "steps"),
    "cfg_negative": ({"json": {"text": "a dog", "cfg": -1}}, {422}, "cfg"),
    "seed_negative": ({"json": {"text": "a dog", "seed": -1}}, {422}, "seed"),
    "seconds_word": ({"data": {"text": "a dog", "seconds": "five"}, "files": {}}, {422}, "seconds"),
    "bad_mode": ({"json": {"text": "a dog", "mode": "magic"}}, {422}, "mode"),
    "text_plain": ({"content": b"a dog barks", "headers": {"content-type": "text/plain"}}, {415}, "multipart"),
    "multipart_no_boundary": ({"content": b"xx", "headers": {"content-type": "multipart/form-data"}},
                              {422}, "boundary"),
    "multipart_cut": ({"content": b"--b\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\ndog",
                       "headers": {"content-type": "multipart/form-data; boundary=b"}}, {422}, "incomplete"),
    "oversized_declared": ({"files": {"speech": ("big.wav", b"\0" * (LIMIT + 1))}}, {413}, "limit"),
    "oversized_chunked": ({"content": iter([b"\0" * 65536] * (LIMIT // 65536 + 2)),
                           "headers": {"content-type": "application/json"}}, {413}, "limit"),
}


def _check(client: httpx.Client, base: str, response: httpx.Response, allowed: set, word: str) -> None:
    assert response.status_code in allowed, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json")
        error = response.json()["error"]
        assert isinstance(error, str) and error and word.lower() in error.lower(), error
    health = client.get(f"{base}/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"


@pytest.mark.parametrize("name", list(SPEECH_CASES))
def test_speech_upload(client, url, name):
    data, allowed, word = SPEECH_CASES[name]
    r = client.post(f"{url}/v1/generate", files={"speech": ("../../etc/passwd", data)},
                    data={"seconds": "2"})
    _check(client, url, r, allowed, word)
    if r.status_code == 200:  # a sane result: a wav of the requested length
        assert r.headers["content-type"] == "audio/wav"
        assert decoded_seconds(r.content) == pytest.approx(2.0, abs=0.01)


@pytest.mark.parametrize("name", ["not_audio", "two_hour_header", "silence", "stereo", "nan_samples"])
def test_listen_upload(client, url, name):
    data, allowed, word = SPEECH_CASES[name]
    if name == "silence":  # a fair question for listen: the answer is "no sound request heard"
        allowed, word = {200}, ""
    r = client.post(f"{url}/v1/listen", files={"speech": ("x.wav", data)})
    _check(client, url, r, allowed, word)
    if r.status_code == 200:
        heard = r.json()
        assert set(heard) >= {"events", "caption", "is_request", "reason"}
        assert heard["is_request"] == (name != "silence")


@pytest.mark.parametrize("name", list(FORM_CASES))
def test_bad_request(client, url, name):
    kwargs, allowed, word = FORM_CASES[name]
    r = client.request("POST", f"{url}/v1/generate", **kwargs)
    _check(client, url, r, allowed, word)


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/v1/generate", 405),
    ("GET", "/nowhere", 404),
    ("GET", "/v1/audio/..%2F..%2Fetc%2Fpasswd", 404),
    ("GET", "/v1/audio/" + "0" * 32 + ".wav", 404),
    ("GET", "/v1/audio/" + "0" * 32 + ".exe", 404),
    ("GET", "/static/..%2Fapp.py", 404),
    ("GET", "/static/%2E%2E/%2E%2E/errors.py", 404),
    ("POST", "/v1/generate?format=xml", 422),
])
def test_bad_routes(client, url, method, path, status):
    r = client.request(method, f"{url}{path}", json={"text": "a dog"})
    _check(client, url, r, {status}, "")


def test_listen_rejects_extra_fields_and_json(client, url):
    r = client.post(f"{url}/v1/listen", files={"speech": ("a.wav", wav_bytes(tone(1.0)))}, data={"steps": "3"})
    _check(client, url, r, {422}, "unknown field 'steps'")
    r = client.post(f"{url}/v1/listen", json={"text": "a dog"})
    _check(client, url, r, {415}, "speech")
    r = client.post(f"{url}/v1/listen", files={"other": ("a.wav", b"x")})
    _check(client, url, r, {422}, "unknown field")


# ---- the same against the real default model -------------------------------------------------------
@pytest.mark.model
@pytest.mark.parametrize("name", ["not_audio", "two_hour_header", "nan_samples", "silence", "rate_96k",
                                  "music_chord"])
def test_real_model_speech_upload(client, real_url, name):
    data, allowed, word = SPEECH_CASES[name]
    r = client.post(f"{real_url}/v1/generate", files={"speech": ("x.wav", data)}, data={"seconds": "2"},
                    timeout=120)
    _check(client, real_url, r, allowed, word)
    if r.status_code == 200:
        assert decoded_seconds(r.content) == pytest.approx(2.0, abs=0.01)


@pytest.mark.model
@pytest.mark.parametrize("name", ["steps_10000", "negative_seconds", "json_unknown_key", "oversized_chunked"])
def test_real_model_bad_request(client, real_url, name):
    kwargs, allowed, word = FORM_CASES[name]
    if name == "oversized_chunked":  # the real server keeps the default 10 MB limit
        kwargs = {"content": iter([b"\0" * 65536] * 170), "headers": {"content-type": "application/json"}}
    r = client.request("POST", f"{real_url}/v1/generate", **kwargs)
    _check(client, real_url, r, allowed, word)


@pytest.mark.model
def test_real_model_spoken_prompt(client, real_url, spoken_prompt):
    r = client.post(f"{real_url}/v1/generate?format=json", files={"speech": ("p.wav", spoken_prompt.read_bytes())},
                    data={"seconds": "3", "seed": "0"}, timeout=120)
    _check(client, real_url, r, {200}, "")
    body = r.json()
    assert body["seconds"] == pytest.approx(3.0, abs=0.01)
    assert body["heard"]["events"], body
    clip = client.get(f"{real_url}{body['url']}")
    assert clip.status_code == 200 and decoded_seconds(clip.content) == pytest.approx(3.0, abs=0.01)
    audio = sf.read(io.BytesIO(clip.content))[0]
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0.01  # not silent, not broken
