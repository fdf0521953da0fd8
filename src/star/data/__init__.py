"""Data: real-sound corpus, caption phrasings, compositional scenes, spoken prompts (TTS) and manifests.

    from star.data.build import build_dataset, read_manifest
    build_dataset("/path/to/esc10", "runs/data/esc10_train")
"""
