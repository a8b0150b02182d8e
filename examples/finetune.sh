#!/usr/bin/env bash
# Fine-tune the default model on 20 pages of one collection and score it on held-out pages of the same
# collection, before and after.
#
#   examples/finetune.sh SET_DIR [WORK_DIR] [SAMPLES]
#
# SET_DIR is a DIBCO-style set (SET_DIR/img/*.png, SET_DIR/gt/*.png, text black in gt); its first 20
# pages (by name) are for training, the rest are held out. WORK_DIR defaults to out/finetune. MODEL (an
# environment variable) is the model to start from (default: the packaged default model).
set -euo pipefail
set_dir=${1:?usage: examples/finetune.sh SET_DIR [WORK_DIR] [SAMPLES]}
work=${2:-out/finetune}
samples=${3:-8000}
ocrobin=${OCROBIN:-ocrobin}
model=${MODEL:-default}

rm -rf "$work"
mkdir -p "$work"/train/img "$work"/train/gt "$work"/test/img "$work"/test/gt
i=0
for img in $(ls "$set_dir"/img | sort); do
  stem=${img%.*}
  part=$([ $i -lt 20 ] && echo train || echo test)
  ln -s "$(realpath "$set_dir/img/$img")" "$work/$part/img/$img"
  ln -s "$(realpath "$set_dir"/gt/"$stem".*)" "$work/$part/gt/"
  i=$((i + 1))
done
echo "fine-tuning on $(ls "$work"/train/img | wc -l) pages, holding out $(ls "$work"/test/img | wc -l)"

$ocrobin binarize "$work"/test/img -o "$work"/before -m "$model" --no-progress
$ocrobin eval --pred "$work"/before --gt "$work"/test/gt --json "$work"/before.json -q

$ocrobin train -m "$model" -d "$work"/train -o "$work"/ckpt/tuned --ntrain "$samples" -b 8 -l 0,2e-4 \
  --save-every "$samples" --threads 2 --pool 12 --no-progress
$ocrobin export "$(ls -t "$work"/ckpt/tuned-*.safetensors | head -1)" --release "$work"/tuned.safetensors --name tuned

$ocrobin binarize "$work"/test/img -o "$work"/after -m "$work"/tuned.safetensors --no-progress
$ocrobin eval --pred "$work"/after --gt "$work"/test/gt --json "$work"/after.json -q
