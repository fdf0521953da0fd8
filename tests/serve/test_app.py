"""What the API promises when input is good: wav and JSON answers, the clip store, the schema, the page."""

from __future__ import annotations

import io
import re
import struct

import httpx
import pytest
import soundfile as sf
from serve_helpers import FakePipeline, decoded_seconds, fake_app, live_server, tone, wav_bytes

from star.errors import StarError
from star.serve import ServeSettings, create_app, serve
from star.serve.app import STATIC
from star.serve.inputs import HttpError, parse_multipart, wav_header_seconds
from star.serve.store import AudioStore


@pytest.fixture(scope="module")
def served():
    app, pipe = fake_app(ServeSettings(store_items=3))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client, pipe, app


def test_generate_from_speech_returns_wav_of_requested_length(served):
    client, _, _ = served
    r = client.post("/v1/generate", files={"speech": ("p.wav", wav_bytes(tone(1.2)))},
                    data={"seconds": "2.5", "steps": "4", "seed": "7", "cfg": "2", "mode": "e2e"})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    assert decoded_seconds(r.content) == pytest.approx(2.5, abs=0.01)
    assert float(r.headers["x-star-seconds"]) == pytest.approx(2.5, abs=0.01)


def test_generate_json_links_clip_spectrogram_and_heard(served):
    client, _, _ = served
    r = client.post("/v1/generate", params={"format": "json"},
                    files={"speech": ("p.wav", wav_bytes(tone(1.2)))}, data={"seconds": "3", "mode": "cascade"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert re.fullmatch(r"[0-9a-f]{32}", body["id"]) and body["url"] == f"/v1/audio/{body['id']}.wav"
    assert body["seconds"] == pytest.approx(3.0) and body["sample_rate"] == 16000
    assert body["heard"]["events"][0] == {"category": "dog", "prob": pytest.approx(0.9)}
    assert body["transcript"] == "a dog is barking"
    assert {"total_s", "queue_s", "listen_s", "server_s"} <= set(body["timings"])
    clip = client.get(body["url"])
    assert clip.headers["content-type"] == "audio/wav" and decoded_seconds(clip.content) == pytest.approx(3.0)
    png = client.get(body["spectrogram"])
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png.content[16:24])
    assert height == 64 * 3 and width == 1 + 3 * 16000 // 256  # mel bins x frames of 3 s


def test_text_prompt_by_json_form_and_urlencoded(served):
    client, _, _ = served
    for kwargs in ({"json": {"text": "a dog barks", "seconds": 1.5}},
                   {"files": {"text": (None, "a dog barks")}, "data": {"seconds": "1.5"}},
                   {"data": {"text": "a dog barks", "seconds": "1.5", "steps": ""}}):
        r = client.post("/v1/generate", params={"format": "json"}, **kwargs)
        assert r.status_code == 200, (kwargs, r.text)
        assert r.json()["seconds"] == pytest.approx(1.5) and r.json()["heard"] is None


def test_store_keeps_only_the_last_clips(served):
    client, _, app = served
    ids = [client.post("/v1/generate?format=json", json={"text": f"dog {i}", "seconds": 1}).json()["id"]
           for i in range(5)]
    assert client.get(f"/v1/audio/{ids[0]}.wav").status_code == 404
    assert client.get(f"/v1/audio/{ids[-1]}.wav").status_code == 200
    assert client.get("/healthz").json()["clips"] == 3
    assert len(list(app.state.store.folder.glob("*.wav"))) == 3


def test_listen_returns_events(served):
    client, _, _ = served
    r = client.post("/v1/listen", files={"speech": ("p.wav", wav_bytes(tone(1.0)))})
    assert r.status_code == 200
    assert r.json()["events"][0]["category"] == "dog" and r.json()["is_request"] is True


def test_openapi_schema_documents_both_bodies(served):
    client, _, _ = served
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/v1/generate"]["post"]["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"]["properties"]["speech"]["format"] == "binary"
    assert set(body["application/json"]["schema"]["properties"]) == {"text", "seconds", "steps", "cfg", "seed",
                                                                      "mode"}
    assert {"/v1/listen", "/v1/audio/{name}", "/healthz"} <= set(schema["paths"])


def test_page_is_served_with_a_strict_policy_and_nothing_external(served):
    client, _, _ = served
    page = client.get("/")
    assert page.status_code == 200 and "<audio" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    for path in STATIC.iterdir():  # works offline: no CDN, no remote fonts
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", path.read_text()), path.name
    js_lines = (STATIC / "app.js").read_text().count("\n")
    assert js_lines < 300, "keep the page logic small: the server owns the logic"


def test_store_folder_removed_on_shutdown():
    app, _ = fake_app()
    with live_server(app) as url:
        r = httpx.post(f"{url}/v1/generate?format=json", json={"text": "a dog", "seconds": 1})
        folder = app.state.store.folder
        assert (folder / f"{r.json()['id']}.wav").is_file()
    assert not folder.exists()


def test_startup_warms_every_path_up_once():
    app, pipe = fake_app()
    with live_server(app) as url:
        assert pipe.calls == 3  # listen, speech generate, text generate
        assert httpx.get(f"{url}/healthz").status_code == 200


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # uvicorn's exit(3)
def test_pipeline_load_error_stops_startup():
    def broken():
        raise RuntimeError("no model here")

    with pytest.raises(RuntimeError, match="did not start"), live_server(create_app(broken), timeout=20):
        pass


def test_store_ignores_anything_but_its_own_ids(tmp_path):
    store = AudioStore(max_items=2)
    try:
        clip = store.add(b"RIFF")
        assert store.path(clip) == store.folder / f"{clip}.wav"
        for bad in ("../" + clip, clip + "/..", clip.upper(), "0" * 32, "", clip + ".wav"):
            assert store.path(bad) is None
        assert store.path(clip, "txt") is None
    finally:
        store.close()
    assert not store.folder.exists()


def test_wav_header_claims():
    wav = wav_bytes(tone(2.0))
    assert wav_header_seconds(wav) == pytest.approx(2.0)
    stereo = wav_bytes(tone(2.0)[:, None].repeat(2, axis=1), 8000)
    assert wav_header_seconds(stereo) == pytest.approx(4.0)  # 32000 frames at 8 kHz
    streaming = bytearray(wav)
    at = streaming.find(b"data")
    streaming[at + 4:at + 8] = struct.pack("<I", 0xFFFFFFFF)  # size unknown: count the bytes present
    assert wav_header_seconds(bytes(streaming)) == pytest.approx(2.0)
    buf = io.BytesIO()
    sf.write(buf, tone(1.0), 16000, format="FLAC")
    assert wav_header_seconds(buf.getvalue()) is None and wav_header_seconds(b"RIFF") is None


def test_multipart_parser_keeps_bytes_and_refuses_duplicates():
    payload = bytes(range(256)) * 4 + b"\r\n--b\r\n"  # a body that contains something like a boundary
    body = (b"--bound\r\nContent-Disposition: form-data; name=\"speech\"; filename=\"/etc/passwd\"\r\n"
            b"Content-Type: audio/wav\r\n\r\n" + payload + b"\r\n--bound--\r\n")
    assert parse_multipart(body, "multipart/form-data; boundary=bound") == {"speech": payload}
    twice = (b"--b\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nx\r\n"
             b"--b\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\ny\r\n--b--\r\n")
    with pytest.raises(HttpError, match="more than once"):
        parse_multipart(twice, "multipart/form-data; boundary=b")


def test_fake_pipeline_matches_the_real_signature():
    import inspect

    from star.pipeline import Pipeline

    for name in ("generate", "listen"):
        real = inspect.signature(getattr(Pipeline, name))
        fake = inspect.signature(getattr(FakePipeline, name))
        assert list(real.parameters) == list(fake.parameters), name


def test_serve_loads_the_model_once_and_binds_loopback(monkeypatch):
    import uvicorn

    from star.pipeline import Pipeline

    loaded, ran = [], {}
    monkeypatch.setattr(Pipeline, "from_pretrained", classmethod(lambda cls, model=None: loaded.append(model)
                                                                 or FakePipeline()))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: ran.update(kw, app=app))
    serve(model_dir="some/model")
    assert loaded == ["some/model"] and ran["host"] == "127.0.0.1" and ran["port"] == 8000


def test_serve_reports_a_bad_model_folder_as_star_error(monkeypatch):
    from star.pipeline import Pipeline

    def missing(cls, model=None):
        raise StarError(f"{model}: no such model folder")

    monkeypatch.setattr(Pipeline, "from_pretrained", classmethod(missing))
    with pytest.raises(StarError, match="no such model folder"):
        serve(model_dir="nowhere")
