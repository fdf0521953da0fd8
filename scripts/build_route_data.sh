#!/bin/bash
# Speak every prompt set the bridge and the phonetic route train on (configs/phonetic.json's manifests), plus
# the festival test set and the FreeTTS and Pico validation sets; a set whose manifest exists is skipped, so a stopped
# run resumes. Commands as in docs/MODEL_CARD.md and docs/STUDY.md. ~90 min on 2 cores.
#   bash scripts/build_route_data.sh ../shared/data/esc10
set -euo pipefail
CORPUS=${1:?usage: bash scripts/build_route_data.sh ESC10_CORPUS_DIR}
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
E=runs/data/esc10_train/prompts.jsonl
MINED="runs/bridge/expand/mined.json runs/bridge/expand_wf/mined.json"
build() {  # build MANIFEST COMMAND...: run the command unless the manifest exists
  local manifest=$1; shift
  if [ -f "$manifest" ]; then echo "have $manifest"; return; fi
  echo "=== $(date +%T) $manifest"
  "$@"
}
build $E $PY -m star.cli data build --corpus "$CORPUS" --out runs/data/esc10_train
build runs/data/esc10_festival/prompts.jsonl $PY -m star.cli data build --corpus "$CORPUS" --out runs/data/esc10_festival --voices festival
build runs/data/esc10_freetts/prompts.jsonl $PY -m star.bridge.respeak --manifest $E --split validation --voices freetts --out runs/data/esc10_freetts
build runs/data/esc10_pico/prompts.jsonl $PY -m star.bridge.respeak --manifest $E --split validation --voices pico --out runs/data/esc10_pico
build runs/bridge/expand/prompts.jsonl $PY -m star.bridge.expand --manifest $E --out runs/bridge/expand
build runs/bridge/expand_wf/prompts.jsonl $PY -m star.bridge.expand --manifest $E --out runs/bridge/expand_wf --lexicon wordfreq \
  --skip-mined runs/bridge/expand/mined.json --per-class 40 --texts-per-word 2 --renditions 1
build runs/bridge/phrasings/prompts.jsonl $PY -m star.bridge.expand --phrasings --renditions 3 --manifest $E --out runs/bridge/phrasings
build runs/bridge/general/prompts.jsonl $PY -m star.bridge.general --manifest $E --out runs/bridge/general --sentences 1500
build runs/bridge/general2/prompts.jsonl $PY -m star.bridge.general --manifest $E --out runs/bridge/general2 --sentences 2500 --seed 1 --top 30000 --extended
build runs/bridge/oov/prompts.jsonl $PY -m star.bridge.expand --oov --out runs/bridge/oov
build runs/bridge/oov_test/prompts.jsonl $PY -m star.bridge.expand --oov --test --out runs/bridge/oov_test
build runs/bridge/expand_contexts/prompts.jsonl $PY -m star.bridge.expand --manifest $E --out runs/bridge/expand_contexts \
  --reuse-mined $MINED --min-zipf 2.3 --contexts --renditions 1 --seed 7
build runs/bridge/padded/prompts.jsonl $PY -m star.bridge.padding --manifest $E --out runs/bridge/padded --per-category 400 \
  --mined runs/bridge/expand_contexts/mined.json
build runs/bridge/expand_many/prompts.jsonl $PY -m star.bridge.expand --manifest $E --out runs/bridge/expand_many \
  --reuse-mined $MINED --min-zipf 2.3 --texts-per-word 5 --renditions 2 --seed 3
build runs/bridge/expand_contexts_scenes/prompts.jsonl $PY -m star.bridge.expand --manifest $E --out runs/bridge/expand_contexts_scenes \
  --reuse-mined $MINED --min-zipf 2.3 --contexts --context-scenes overlay sequence repeat --renditions 1 --seed 8
echo "=== $(date +%T) done"
