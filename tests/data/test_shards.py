"""Tar shards on the six real fixture clips: manifest -> shards -> samples round trip, shard patterns, the
split over ranks and dataloader workers, seeded shuffling, damaged shards, and the `star data shard` CLI."""

from __future__ import annotations

import csv
import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import MINI

from star.audio.io import load_audio
from star.cli import main as star_main
from star.data.shards import ShardStream, expand_braces, expand_shards, iter_samples, write_shards
from star.errors import StarError


def make_manifest(folder: Path) -> Path:
    """The fixture clips as a sounds.jsonl; ids with dots and slashes, which shard keys must not carry."""
    rows = []
    for i, row in enumerate(csv.DictReader((MINI / "meta.csv").open())):
        rows.append({"id": f"esc10/{row['filename']}", "audio": str(MINI / "audio" / row["filename"]),
                     "captions": [f"the sound of {row['category']}", row["category"]],
                     "events": [{"label": row["category"], "onset": 0.0, "offset": 5.0}],
                     "split": "validation" if i == 0 else "train"})
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sounds.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def sharded(tmp_path_factory) -> tuple[Path, Path]:
    """(manifest, shard folder): six clips in three shards of two."""
    root = tmp_path_factory.mktemp("shards")
    manifest = make_manifest(root / "data")
    write_shards(manifest, root / "shards", items_per_shard=2)
    return manifest, root / "shards"


def keys_of(stream) -> list[str]:
    return [s["key"] for s in stream]


def test_round_trip_keeps_ids_captions_and_audio(sharded):
    manifest, folder = sharded
    assert [p.name for p in sorted(folder.glob("*.tar"))] == [f"shard-00000{i}.tar" for i in range(3)]
    index = json.loads((folder / "shards.json").read_text())
    assert index["items"] == 6 and [s["items"] for s in index["shards"]] == [2, 2, 2]
    rows = {r["id"]: r for r in map(json.loads, manifest.read_text().splitlines())}
    samples = list(ShardStream(folder, epochs=1))
    assert sorted(s["id"] for s in samples) == sorted(rows)
    for s in samples:
        row = rows[s["id"]]
        assert "." not in s["key"] and "/" not in s["key"]
        assert all(s[k] == row[k] for k in ("captions", "events", "split"))
        original = load_audio(row["audio"], allow_silent=True)
        assert s["audio"].dtype == np.float32 and s["audio"].shape == original.shape
        assert np.max(np.abs(s["audio"] - np.clip(original, -1, 1))) <= 1.5 / 2**23  # 24-bit PCM


def test_sixteen_bit_shards_are_smaller_and_within_pcm_tolerance(sharded, tmp_path):
    manifest, folder = sharded
    paths = write_shards(manifest, tmp_path / "pcm16", items_per_shard=2, bits=16)
    assert sum(p.stat().st_size for p in paths) < 0.7 * sum(p.stat().st_size for p in folder.glob("*.tar"))
    rows = {r["id"]: r for r in map(json.loads, manifest.read_text().splitlines())}
    for s in iter_samples(paths):
        original = np.clip(load_audio(rows[s["id"]]["audio"], allow_silent=True), -1, 1)
        assert np.max(np.abs(s["audio"] - original)) <= 1.5 / 2**15


def test_members_follow_the_webdataset_convention(sharded):
    _, folder = sharded
    with tarfile.open(folder / "shard-000000.tar") as tar:
        names = tar.getnames()
    assert len(names) == 4 and {n.split(".", 1)[1] for n in names} == {"wav", "json"}
    assert names[0].split(".")[0] == names[1].split(".")[0], "a sample's members are adjacent"


def test_writing_is_deterministic_and_refuses_to_mix_with_old_shards(sharded, tmp_path):
    manifest, folder = sharded
    with pytest.raises(StarError, match="already holds shards"):
        write_shards(manifest, folder, items_per_shard=2)
    write_shards(manifest, tmp_path / "again", items_per_shard=2)
    for p in folder.glob("*.tar"):
        assert (tmp_path / "again" / p.name).read_bytes() == p.read_bytes()
    # a byte budget closes shards too; overwrite replaces the old set
    paths = write_shards(manifest, tmp_path / "again", items_per_shard=100, max_shard_bytes=1, overwrite=True)
    assert len(paths) == 6 and not list((tmp_path / "again").glob("*.tmp"))
    only = write_shards(manifest, tmp_path / "val", split="validation")
    assert [s["split"] for s in iter_samples(only)] == ["validation"]


def test_a_bad_row_stops_the_writer_cleanly(tmp_path):
    manifest = make_manifest(tmp_path / "data")
    rows = manifest.read_text().splitlines()
    gone = json.dumps({"id": "gone", "audio": "gone.wav", "captions": ["x"]})
    manifest.write_text("\n".join([*rows, gone]))
    with pytest.raises(StarError, match="gone.wav: no such file"):
        write_shards(manifest, tmp_path / "out", items_per_shard=2, seed=None)
    left = [p.name for p in (tmp_path / "out").iterdir()]
    assert left and all(name.endswith(".tar") for name in left), "no half-written shard, no index"
    assert all(len(list(iter_samples([tmp_path / "out" / name]))) == 2 for name in left)
    manifest.write_text("\n".join(rows + [rows[0].replace("esc10/", "esc10.")]))
    with pytest.raises(StarError, match="same shard key"):
        write_shards(manifest, tmp_path / "dup")


def test_folder_brace_pattern_glob_and_list_name_the_same_shards(sharded):
    _, folder = sharded
    every = sorted(folder.glob("*.tar"))
    assert expand_braces("a-{000..002}.tar") == ["a-000.tar", "a-001.tar", "a-002.tar"]
    assert expand_braces("{x,y}-{1..2}") == ["x-1", "x-2", "y-1", "y-2"]
    assert expand_shards(folder) == every
    assert expand_shards(f"{folder}/shard-{{000000..000002}}.tar") == every
    assert expand_shards(f"{folder}/shard-*.tar") == every
    assert expand_shards([str(p) for p in every]) == every
    assert expand_shards(f"{every[0]}::{every[2]}") == [every[0], every[2]]
    with pytest.raises(StarError, match="shard-000003.tar"):
        expand_shards(f"{folder}/shard-{{000000..000003}}.tar")


@pytest.mark.parametrize("world", [1, 2, 3, 4, 5])  # 4 and 5 > 3 shards: split by sample instead of shard
def test_ranks_read_every_sample_exactly_once_per_epoch(sharded, world):
    _, folder = sharded
    for epoch_count in (1, 2):
        seen = Counter()
        for rank in range(world):
            seen.update(keys_of(ShardStream(folder, rank=rank, world=world, seed=5, epochs=epoch_count)))
        assert len(seen) == 6 and set(seen.values()) == {epoch_count}


def test_more_ranks_than_samples_is_a_clear_error(sharded):
    _, folder = sharded
    with pytest.raises(StarError, match="part 6 of 7 .* got no samples"):
        list(ShardStream(folder, rank=6, world=7, epochs=1))


def test_dataloader_workers_split_the_shards_too(sharded):
    _, folder = sharded
    seen = Counter()
    for rank in range(2):
        stream = ShardStream(folder, rank=rank, world=2, seed=1, epochs=1, shuffle_buffer=2)
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2)
        seen.update(keys_of(loader))
    assert len(seen) == 6 and set(seen.values()) == {1}


def test_shuffling_is_seeded_and_changes_every_epoch(sharded):
    _, folder = sharded

    def order(seed):
        return keys_of(ShardStream(folder, seed=seed, epochs=4, shuffle_buffer=3))

    assert order(0) == order(0)
    assert order(0) != order(1)
    first = order(0)
    epochs = [first[i : i + 6] for i in range(0, 24, 6)]
    assert len({tuple(e) for e in epochs}) > 1, "a new order every epoch"
    unshuffled = keys_of(ShardStream(folder, epochs=1, shuffle_buffer=0))
    within = [unshuffled[i : i + 2] for i in (0, 2, 4)]  # without a buffer, shards stay whole
    assert all(sorted(pair) in [sorted(k) for k in within] for pair in (unshuffled[:2], unshuffled[2:4]))


def test_endless_stream_keeps_going(sharded):
    _, folder = sharded
    stream = iter(ShardStream(folder, seed=0, shuffle_buffer=4))
    keys = [next(stream)["key"] for _ in range(40)]  # six and a half epochs
    assert len(set(keys)) == 6 and min(Counter(keys).values()) >= 4


def test_truncated_shard_names_shard_and_key(sharded, tmp_path):
    _, folder = sharded
    good = folder / "shard-000001.tar"
    with tarfile.open(good) as tar:
        members = tar.getmembers()  # key1.wav, key1.json, key2.wav, key2.json
    bad = tmp_path / good.name
    bad.write_bytes(good.read_bytes()[: members[2].offset_data + 700])  # inside the second sample's audio
    first, second = (members[i].name.split(".")[0] for i in (0, 2))
    with pytest.raises(StarError, match=rf"shard .*shard-000001.tar: truncated or corrupt at key '{second}'"):
        list(iter_samples([bad]))
    with pytest.warns(UserWarning, match="skipping the rest"):
        kept = list(ShardStream(bad, epochs=1, on_error="warn"))
    assert [s["key"] for s in kept] == [first]


def test_corrupt_members_name_shard_and_key(tmp_path):
    wav = io.BytesIO()
    import soundfile as sf

    sf.write(wav, np.zeros(1600, dtype=np.float32), 16000, format="WAV", subtype="PCM_16")
    members = [("good.wav", wav.getvalue()), ("good.json", b'{"id": "good", "captions": ["x"]}'),
               ("noise.wav", b"not audio at all" * 10), ("noise.json", b'{"id": "noise"}'),
               ("broken.wav", wav.getvalue()), ("broken.json", b"{not json"),
               ("lonely.json", b'{"id": "lonely"}')]
    path = tmp_path / "shard-000000.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(StarError, match=r"shard-000000.tar, key 'noise'.*noise.wav"):
        list(iter_samples([path]))
    with pytest.warns(UserWarning) as caught:
        kept = list(ShardStream(path, epochs=1, on_error="warn"))
    assert [s["key"] for s in kept] == ["good"]
    messages = " ".join(str(w.message) for w in caught)
    for expected in ("'noise'", "broken.json is not valid JSON", "no lonely.wav"):
        assert expected in messages


def test_keys_keep_folders_and_other_audio_formats_are_read(tmp_path):
    import soundfile as sf

    tone = (0.3 * np.sin(np.arange(1600) / 5)).astype(np.float32)
    members = []
    for folder, fmt in (("a", "FLAC"), ("b", "WAV")):
        buf = io.BytesIO()
        sf.write(buf, tone, 16000, format=fmt)
        meta = json.dumps({"id": folder}).encode()
        members += [(f"{folder}/x.{fmt.lower()}", buf.getvalue()), (f"{folder}/x.json", meta)]
    path = tmp_path / "other-tool.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    samples = list(iter_samples([path]))
    assert [(s["key"], s["id"]) for s in samples] == [("a/x", "a"), ("b/x", "b")]
    assert all(np.abs(s["audio"] - tone).max() < 1e-3 for s in samples)


def test_star_data_shard_cli(tmp_path, capsys):
    manifest = make_manifest(tmp_path / "data")
    out = tmp_path / "shards"
    assert star_main(["data", "shard", "--manifest", str(manifest), "--out", str(out),
                      "--items-per-shard", "4"]) == 0
    assert "wrote 2 shards" in capsys.readouterr().out
    assert sorted(s["id"] for s in iter_samples(expand_shards(out))) == sorted(
        json.loads(line)["id"] for line in manifest.read_text().splitlines())
    assert star_main(["data", "shard", "--manifest", str(manifest), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    missing = star_main(["data", "shard", "--manifest", str(tmp_path / "none.jsonl"), "--out", str(out)])
    assert missing == 2 and "not found" in capsys.readouterr().err
