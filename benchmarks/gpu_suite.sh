#!/usr/bin/env bash
# Every GPU figure of issue 7 in one go: ResNet-50, 224-px views of 448-px pairs, bf16, batch 256.
#
#   bash benchmarks/gpu_suite.sh                 # all stages
#   bash benchmarks/gpu_suite.sh step pipeline   # some stages: install step profile nancheck
#                                                #   step512 pipeline embed e2e report
#
# Stages (about 2-6 minutes each on one H100; run them in separate calls where one call is
# limited to 10 minutes):
#   step      (1) (2) (5) benchmarks.step_throughput: 5 recipes x eager / channels_last / compile,
#             torchgeo MoCoTask at the same settings, peak memory and the largest batch (OOM search)
#   profile   torch.profiler over the full recipe + the host syncs by calling line
#   nancheck  tp_geo_co2 compiled with model.nan_check_every_n_steps=0 (the cost of the check)
#   step512   batch 512, channels_last and compile
#   pipeline  (3) benchmarks.input_pipeline: PIL in 8 / 15 workers vs nvJPEG on the GPU
#   embed     (4) benchmarks.embed_throughput: ResNet-50, batch 256, 20,000 px raster
#   e2e       geossl pretrain end to end (benchmarks.pretrain_throughput, bf16-mixed), JPEGs
#             decoded in the workers (PIL) and on the GPU (data.decode_on_device, nvJPEG)
#   report    benchmarks.targets (PASS / FAIL) and docs/benchmarks.md
# The results go to benchmarks/results/*.json and docs/benchmarks.md, and are copied to $OUT when
# it is set. The GPU image has torch, torchvision, lightning and timm; torchgeo, kornia, rasterio,
# ... come from the wheels in .whl/ (make them here with: bash ../shared/tools/gpu-wheels.sh, and
# carry .whl to the GPU machine).
set -uo pipefail
cd "$(dirname "$0")/.."

# --- install (a no-op when everything imports already) -------------------------------------------
if ! python3 -c "import torchgeo, kornia, rasterio, lightly, jsonargparse" 2>/dev/null; then
  if [ -d /tmp/site ] && PYTHONPATH="/tmp/site" python3 -c "import torchgeo, kornia" 2>/dev/null; then
    :
  elif compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  else
    echo "torchgeo / kornia are missing and there is no .whl/ (bash ../shared/tools/gpu-wheels.sh)" >&2
    exit 1
  fi
  export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! python3 -c "import geossl" 2>/dev/null; then
  python3 -m pip install -q -e . --no-deps --no-build-isolation 2>/dev/null \
    || export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
python3 -c "import geossl, torchgeo, torch; print('geossl', geossl.__version__, 'torchgeo', torchgeo.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"

STAGES=("$@")
[ ${#STAGES[@]} -eq 0 ] && STAGES=(step profile nancheck step512 pipeline embed e2e report)
WORKERS=$(( $(nproc) > 2 ? $(nproc) - 1 : 1 ))
COMMON=(--device cuda --backbone resnet50 --crop-size 224 --image-size 448 --precision bf16
        --queue-size 65536 --num-geo-clusters 100 --no-docs)
status=0

run() {  # run NAME CMD...: time a stage, keep going when it fails
  local name=$1; shift
  local start=$SECONDS
  echo "=== $name: $*"
  "$@" || { echo "=== $name FAILED (exit $?)"; status=1; }
  echo "=== $name took $(( SECONDS - start )) s"
}

for stage in "${STAGES[@]}"; do
  case $stage in
    install) ;;
    step) run step python3 -m benchmarks.step_throughput "${COMMON[@]}" --batch-size 256 \
            --warmup 3 --steps 10 --max-batch ;;
    profile) run profile python3 -m benchmarks.step_throughput "${COMMON[@]}" --batch-size 256 \
            --warmup 3 --steps 3 --profile --recipes all --modes channels_last ;;
    nancheck) run nancheck python3 -m benchmarks.step_throughput "${COMMON[@]}" --batch-size 256 \
            --warmup 3 --steps 10 --recipes tp_geo_co2 --modes channels_last compile --no-torchgeo \
            --nan-check-every-n-steps 0 --output benchmarks/results/step_throughput_nan_check_off.json ;;
    step512) run step512 python3 -m benchmarks.step_throughput "${COMMON[@]}" --batch-size 512 \
            --warmup 3 --steps 10 --modes channels_last compile \
            --output benchmarks/results/step_throughput_batch512.json ;;
    pipeline) run pipeline python3 -m benchmarks.input_pipeline --device cuda --locations 400 \
            --source-size 512 1536 --image-size 448 --crop-size 224 --batch-size 256 \
            --workers 8 "$WORKERS" --batches 10 --warmup 2 --no-docs ;;
    embed) run embed python3 -m benchmarks.embed_throughput --device cuda --backbone resnet50 \
            --batch-size 256 --workers "$WORKERS" --work-dir /tmp/geossl-embed ;;
    e2e) run e2e python3 -m benchmarks.pretrain_throughput \
            --configs resnet50_224 resnet50_224_decode_on_device --accelerator gpu \
            --batch-size 256 --steps 40 --workers "$WORKERS" --precision bf16-mixed ;;
    report) run report python3 -m benchmarks.targets ;;
    *) echo "unknown stage $stage" >&2; status=1 ;;
  esac
done

python3 -m benchmarks.update_docs >/dev/null
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT/results"
  cp benchmarks/results/*.json "$OUT/results/" && cp docs/benchmarks.md "$OUT/"
  echo "copied the results and docs/benchmarks.md to $OUT"
fi
exit $status
