#!/usr/bin/env bash
# Issue 18's GPU part in one prepared go: training speed against diffusers' own LoRA scripts on the
# real SD1.5/SDXL architectures (random weights), SDXL's peak memory under the "SDXL 12 GB" preset,
# the opt-in levers (torch.compile, channels-last), and the multi-GPU scaling when there are 2+ GPUs.
#
# 1. Here, on a machine with pip and a diffusers checkout (the search tool's fetch, or git clone):
#
#        bench/gpu_session.sh prepare /path/to/diffusers      # or the folder holding the two scripts
#
#    writes .whl/ (wheels for Python 3.12 that the GPU image lacks: diffusers, datasets, tomlkit,
#    pydantic...; bitsandbytes too when it fits the 64 MiB a run may carry) and .bench-diffusers/
#    (the two UNMODIFIED example scripts and their commit). Both are git-ignored: never committed.
#
# 2. On the GPU machine (the device tool: carry [".whl", ".bench-diffusers"], timeout 600):
#
#        bash bench/gpu_session.sh run                       # everything, in priority order
#
#    It stops starting new parts after LORAWB_GPU_BUDGET_S seconds (default 480), so the whole
#    stays under 10 minutes on one H100/H200. Figures land in $OUT (the device tool's folder) or
#    bench-out/: one JSON per part and gpu_session.log with every table (paste them into README.md
#    "Training speed" and docs/training.md "Speed"). The parts, first to last:
#
#      memory    SDXL 1024 px, batch 1, lorawb with the "SDXL 12 GB" preset's settings (latent + text
#                caches, encoders off the GPU, gradient checkpointing, bf16, 8-bit AdamW if
#                bitsandbytes came along, else AdamW): peak torch.cuda.max_memory_allocated; the
#                target is under 10 GB
#      sd15      SD1.5 512 px, batch 4: diffusers script, re-implementation, lorawb uncached, cached
#      sdxl      SDXL 1024 px, batch 1: the same four
#      levers    SD1.5 512 px batch 4, lorawb cached with train.compile, then with train.channels_last
#      multigpu  with 2+ GPUs: `lorawb train` with train.num_processes=2 against 1 process (steps/s)
#      flux      issue 23: a random full-size FLUX.1-dev (transformer, VAE, CLIP-L, T5-XXL in bf16; ~35 GB
#                written to /tmp/lorawb-models/flux on first use), 1024 px, batch 1, rank 16, gradient
#                checkpointing: diffusers' train_dreambooth_lora_flux.py without and with --cache_latents,
#                the bare transformer step, lorawb uncached and cached: steps/s and peak memory
#      bigmodels issue 25: full-size FLUX.1 (random weights from its config), 1024 px, batch 1, rank 16,
#                cached text, gradient checkpointing: peak memory and steps/s with bf16, fp8 (batch 2),
#                int8 and nf4 bases and fp8 with 19 blocks offloaded, and SDXL with the "SDXL 12 GB"
#                preset, each beside the memory plan's prediction (bench/bigmodels.py; ~5 minutes:
#                `bash bench/gpu_session.sh run bigmodels` runs it alone, first)
#
#    `bash bench/gpu_session.sh run sd15 levers` runs only those parts.
#
# Not here: the toy-world base model's longer pretraining (`lorawb toyworld pretrain --init ...`,
# docs/toyworld.md) needs its own GPU session of 10+ minutes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

prepare() {
  local src="${1:?usage: bench/gpu_session.sh prepare DIFFUSERS_CHECKOUT_OR_FOLDER}"
  mkdir -p .bench-diffusers
  local exclude
  exclude="$(git rev-parse --git-path info/exclude)"
  mkdir -p "$(dirname "$exclude")"
  grep -qx '/.bench-diffusers/' "$exclude" 2>/dev/null || echo '/.bench-diffusers/' >> "$exclude"
  for name in train_text_to_image_lora.py train_text_to_image_lora_sdxl.py train_dreambooth_lora_flux.py; do
    local f="$src/examples/text_to_image/$name"
    [[ -f "$f" ]] || f="$src/examples/dreambooth/$name"
    [[ -f "$f" ]] || f="$src/$name"
    [[ -f "$f" ]] || { echo "no $name under $src" >&2; exit 2; }
    cp "$f" .bench-diffusers/
  done
  if git -C "$src" rev-parse HEAD >/dev/null 2>&1; then
    git -C "$src" rev-parse HEAD > .bench-diffusers/COMMIT
  elif [[ -f "$src/COMMIT" ]]; then
    cp "$src/COMMIT" .bench-diffusers/COMMIT
  fi
  echo "diffusers scripts: $(cat .bench-diffusers/COMMIT 2>/dev/null || echo 'commit unknown')"
  rm -rf .whl && mkdir -p .whl
  local plat=(--only-binary=:all: --python-version 3.12 --implementation cp
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
  # What lorawb's core/train and the diffusers scripts import that the GPU image lacks (its torch,
  # transformers, accelerate, peft, safetensors, torchvision, pyarrow, pandas, psutil are used as they are).
  local wheels=(diffusers==0.42.1 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 tomlkit==0.15.2
    pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
    watchdog==7.1.0 ImageHash==4.3.2 PyWavelets==1.9.0)
  for w in "${wheels[@]}"; do
    python3 -m pip download -q --no-deps "${plat[@]}" -d .whl "$w"
  done
  rm -rf /tmp/lorawb-bnb
  python3 -m pip download -q --no-deps "${plat[@]}" -d /tmp/lorawb-bnb bitsandbytes==0.50.2 || true
  local used bnb
  # Everything a run carries counts: the tracked tree too.
  used=$(python3 -c 'import os, subprocess, glob
files = subprocess.run(["git", "ls-files"], capture_output=True, text=True).stdout.split("\n")
files += glob.glob(".whl/*") + glob.glob(".bench-diffusers/*")
print(sum(os.path.getsize(f) for f in files if os.path.isfile(f)) >> 20)')
  bnb=$(du -sm /tmp/lorawb-bnb 2>/dev/null | awk '{print $1}')
  if compgen -G '/tmp/lorawb-bnb/*.whl' >/dev/null && ((used + bnb < 62)); then
    mv /tmp/lorawb-bnb/*.whl .whl/
  else
    echo "bitsandbytes left out (${bnb:-?} MiB + ${used} MiB: over the 64 MiB a run carries); memory runs AdamW"
  fi
  du -sh .whl .bench-diffusers
}

part_wanted() {
  [[ ${#PARTS[@]} -eq 0 ]] && return 0
  local p
  for p in "${PARTS[@]}"; do [[ "$p" == "$1" ]] && return 0; done
  return 1
}

time_left() {
  local spent=$((SECONDS - START))
  if ((spent > BUDGET)); then
    echo "== $1 skipped: ${spent} s spent of the ${BUDGET} s budget" | tee -a "$LOG"
    return 1
  fi
}

bench() {  # bench NAME ARGS...: one bench/train_speed.py run, its table to the log, its JSON to $OUT
  local name="$1"
  shift
  echo "== $name: python bench/train_speed.py $*" | tee -a "$LOG"
  python3 bench/train_speed.py --device cuda --json "$OUT/$name.json" "$@" 2>&1 | tee -a "$LOG" | grep -v '^  round' || true
}

run() {
  PARTS=("$@")
  OUT="${OUT:-$ROOT/bench-out}"
  mkdir -p "$OUT"
  LOG="$OUT/gpu_session.log"
  START=$SECONDS
  BUDGET="${LORAWB_GPU_BUDGET_S:-480}"
  export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
  if [[ -d .whl ]]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
  fi
  {
    echo "gpu_session $(date -u +%FT%TZ), lorawb $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    nvidia-smi -L || true
    python3 -c 'import torch, diffusers; print("torch", torch.__version__, "diffusers", diffusers.__version__)'
  } | tee "$LOG"
  local script=(--diffusers-script "$ROOT/.bench-diffusers")
  local optim="adamw8bit"
  python3 -c 'import bitsandbytes' 2>/dev/null || optim="adamw"
  if part_wanted memory && time_left memory; then
    bench sdxl-memory --family sdxl --full-size --model-dir /tmp/lorawb-models/sdxl --only cached --repeat 1 --steps 10 --gradient-checkpointing \
      --lorawb-set "train.optimizer='$optim'" --lorawb-set train.offload_frozen=true
  fi
  if part_wanted sd15 && time_left sd15; then
    bench sd15-speed --family sd1 --full-size --model-dir /tmp/lorawb-models/sd1 --batch 4 --repeat 1 --steps 30 "${script[@]}"
  fi
  if part_wanted sdxl && time_left sdxl; then
    bench sdxl-speed --family sdxl --full-size --model-dir /tmp/lorawb-models/sdxl --repeat 1 --steps 20 "${script[@]}"
  fi
  if part_wanted levers && time_left levers; then
    bench sd15-compile --family sd1 --full-size --model-dir /tmp/lorawb-models/sd1 --batch 4 --repeat 1 --steps 30 --warmup 5 --only cached \
      --lorawb-set train.compile=true
    bench sd15-channels-last --family sd1 --full-size --model-dir /tmp/lorawb-models/sd1 --batch 4 --repeat 1 --steps 30 --only cached \
      --lorawb-set train.channels_last=true
  fi
  if part_wanted bigmodels && time_left bigmodels; then
    echo "== bigmodels: python bench/bigmodels.py" | tee -a "$LOG"
    python3 bench/bigmodels.py --device cuda --steps 6 --json "$OUT/bigmodels.json" 2>&1 | tee -a "$LOG" || true
  fi
  local gpus
  gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
  if part_wanted multigpu && time_left multigpu; then
    if ((gpus > 1)); then
      bench sd15-1gpu --family sd1 --full-size --model-dir /tmp/lorawb-models/sd1 --batch 4 --repeat 1 --steps 30 --only cached
      bench sd15-2gpu --family sd1 --full-size --model-dir /tmp/lorawb-models/sd1 --batch 4 --repeat 1 --steps 30 --only cached \
        --lorawb-set train.num_processes=2
    else
      echo "== multigpu: one GPU here; the Accelerate command-construction test stands in" | tee -a "$LOG"
    fi
  fi
  if part_wanted flux && time_left flux; then
    bench flux-speed --family flux --full-size --model-dir /tmp/lorawb-models/flux --repeat 1 --steps 10 \
      --gradient-checkpointing "${script[@]}"
  fi
  echo "== done in $((SECONDS - START)) s; figures in $OUT" | tee -a "$LOG"
}

case "${1:-}" in
  prepare) shift; prepare "$@" ;;
  run) shift; run "$@" ;;
  *) sed -n '2,41p' "$0"; exit 2 ;;
esac
