#!/usr/bin/env bash
# bench_gpu.sh — issue #11's GPU benchmarks as one command for a GPU machine
# (H100 / H200, CUDA 13, cmake, gcc, PyTorch + transformers + PEFT, bitsandbytes
# if installed; no network), made to fit a 10-minute device slot:
#   1. build lorac for the card present only (CMAKE_CUDA_ARCHITECTURES from
#      nvidia-smi, LORAC_CUDA=ON, no tests) in build-bench/: lorac, bench_cuda_ops;
#   2. kernels: tests/bench_cuda_ops.c and scripts/bench_torch_ops.py, each op at
#      Llama-3.1-8B shapes (B 2, T 2048), then the table with the attention
#      (>= 250 TFLOP/s forward, >= 150 backward) and NF4 dequantization (>= 2 TB/s)
#      targets;
#   3. training, alternating `lorac bench` and scripts/bench_gpu_peft.py row by
#      row: random-initialised models, LoRA r 16 on all 7 linears, sequence 2048,
#      AdamW, bf16 — Llama-3.2-1B shape micro-batch 8 with gradient checkpointing
#      off and on, Llama-3.1-8B shape micro-batch 1 off and 2 on, QLoRA (NF4,
#      double quant) 8B micro-batch 2 on; then the table with the targets
#      (>= 2x PEFT's tokens/s at no more memory; QLoRA >= 10,000 tokens/s within
#      12 GiB). scripts/bench_gpu_report.py makes both tables.
# Every run has its own timeout, cut to what is left of 540 s for the whole
# script. Estimate on an H100/H200 host (16 cores): build 60-120 s; kernels ~40 s;
# 1B rows ~35 s each (lorac set-up ~8 s, PEFT's Python start ~10 s); 8B rows
# ~80 s each, most of it lorac's set-up (8 G random values, drawn on every core
# since 25ef0e8, quantized, uploaded); about 450 s in all at --steps 4
# --warmup 2 (estimated before the parallel fill; nothing here ran on a GPU).
#
#   scripts/bench_gpu.sh [--steps 4] [--warmup 2] [--rows 1,2,3,4,5] [--no-kernels]
#                        [--no-train] [--python python3]
#   scripts/bench_gpu.sh --tiny   # the same pipeline on tiny shapes (hidden 64,
#                        # 2 layers, seq 32) with the simulator build (build-sim/,
#                        # lorac --device cuda) and torch on the CPU, no GPU needed
# Logs and JSON go to $OUT when it is set (the device runner's result folder),
# else to BUILD/bench-logs. Exit 0 when everything ran and every target passed
# (--tiny: when everything ran), 1 otherwise, 2 without a GPU (nothing run).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
. scripts/gpu_env.sh
TINY=0 STEPS= WARMUP= ROWS=1,2,3,4,5 KERNELS=1 TRAIN=1 PY=${PYTHON:-python3}
while [ $# -gt 0 ]; do
    case "$1" in
        --tiny) TINY=1; shift ;;
        --steps) STEPS=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --rows) ROWS=$2; shift 2 ;;
        --no-kernels) KERNELS=0; shift ;;
        --no-train) TRAIN=0; shift ;;
        --python) PY=$2; shift 2 ;;
        *) echo "usage: $0 [--tiny] [--steps N] [--warmup N] [--rows 1,2,...] [--no-kernels]" \
                "[--no-train] [--python PY]" >&2; exit 2 ;;
    esac
done

if [ "$TINY" = 1 ]; then
    BUILD=build-sim DEV=cpu TOTAL=3600 SEQ=32 STEPS=${STEPS:-2} WARMUP=${WARMUP:-1}
    SHAPE_1B=(--hidden 64 --layers 2 --heads 4 --kv-heads 2 --intermediate 128 --vocab 512 --tied 1)
    SHAPE_8B=(--hidden 64 --layers 2 --heads 4 --kv-heads 2 --intermediate 128 --vocab 512 --tied 0)
    KSHAPE=(--hidden 64 --ff 128 --vocab 512 --batch 2 --seq 32 --heads 4 --kv-heads 2 --head-dim 16
            --adam-params 4096 --reps 3 --iters 1)
    TINYFLAG=(--tiny)
    echo "== tiny shapes: lorac on the CUDA simulator ($BUILD), torch on the CPU ($PY)"
    if ! grep -q "^LORAC_CUDA_SIM:BOOL=ON" "$BUILD/CMakeCache.txt" 2>/dev/null; then
        cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DLORAC_CUDA_SIM=ON >/dev/null \
            || { echo "FAILED: configure $BUILD"; exit 1; }
    fi
    CONFIGURE=()
else
    BUILD=build-bench DEV=cuda TOTAL=540 SEQ=2048 STEPS=${STEPS:-4} WARMUP=${WARMUP:-2}
    SHAPE_1B=(--hidden 2048 --layers 16 --heads 32 --kv-heads 8 --intermediate 8192 --vocab 128256 --tied 1)
    SHAPE_8B=(--hidden 4096 --layers 32 --heads 32 --kv-heads 8 --intermediate 14336 --vocab 128256 --tied 0)
    KSHAPE=(--hidden 4096 --ff 14336 --vocab 128256 --batch 2 --seq 2048 --heads 32 --kv-heads 8
            --head-dim 128 --adam-params 40000000 --reps 10 --iters 5)
    TINYFLAG=()
    if ! gpu_detect; then
        echo "no GPU (nvidia-smi failed): nothing run (scripts/bench_gpu.sh --tiny runs the pipeline here)"
        exit 2
    fi
    echo "== GPU: $GPU (sm_$ARCH); $("$PY" -c 'import torch, transformers, peft
print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)' 2>&1 | tail -1)"
    CONFIGURE=(-DLORAC_CUDA=ON -DLORAC_TESTS=OFF -DCMAKE_CUDA_ARCHITECTURES="$ARCH")
fi
LOG=${OUT:-$BUILD/bench-logs}
mkdir -p "$LOG"
DEADLINE=$((SECONDS + TOTAL)) # each run's timeout is cut to what is left (limit)
# summary LOG PATTERN: what a run printed that matches (its times), else its last line
summary() { grep -oE "$2" "$1" | tail -1 | grep . || tail -1 "$1"; }
rc=0

echo "== build ($BUILD: lorac, bench_cuda_ops); logs in $LOG"
if [ ${#CONFIGURE[@]} -gt 0 ]; then
    timeout "$(limit 60)" cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release "${CONFIGURE[@]}" \
        >"$LOG/configure.log" 2>&1 || { tail -20 "$LOG/configure.log"; echo "FAILED: configure"; exit 1; }
fi
timeout "$(limit 240)" cmake --build "$BUILD" -j"$(nproc)" --target lorac bench_cuda_ops \
    >"$LOG/build.log" 2>&1 || { tail -30 "$LOG/build.log"; echo "FAILED: build"; exit 1; }

if [ "$KERNELS" = 1 ]; then
    echo "== kernels: bench_cuda_ops and bench_torch_ops.py (${KSHAPE[*]})"
    timeout "$(limit 90)" "$BUILD/bench_cuda_ops" "${KSHAPE[@]}" >"$LOG/kernels_lorac.jsonl" \
        2>"$LOG/kernels_lorac.err" || { tail -3 "$LOG/kernels_lorac.err"; echo "FAILED: bench_cuda_ops"; rc=1; }
    timeout "$(limit 90)" "$PY" scripts/bench_torch_ops.py "${KSHAPE[@]}" --device "$DEV" \
        >"$LOG/kernels_torch.jsonl" 2>"$LOG/kernels_torch.err" \
        || { tail -3 "$LOG/kernels_torch.err"; echo "FAILED: bench_torch_ops.py"; rc=1; }
    "$PY" scripts/bench_gpu_report.py kernels "$LOG/kernels_lorac.jsonl" "$LOG/kernels_torch.jsonl" \
        "${TINYFLAG[@]}" "${KSHAPE[@]}" | tee "$LOG/kernels.md" ; [ "${PIPESTATUS[0]}" = 0 ] || rc=1
fi

if [ "$TRAIN" = 1 ]; then
    # label | shape | micro-batch | checkpointing | nf4 | lorac timeout | PEFT timeout
    ALL_ROWS=("Llama-3.2-1B|1B|8|0|0|90|90" "Llama-3.2-1B|1B|8|1|0|90|90"
              "Llama-3.1-8B|8B|1|0|0|150|120" "Llama-3.1-8B|8B|2|1|0|150|120"
              "Llama-3.1-8B QLoRA|8B|2|1|1|150|120")
    MANIFEST="$LOG/train.tsv"
    : >"$MANIFEST"
    for i in ${ROWS//,/ }; do
        IFS='|' read -r label shape batch ckpt nf4 tl tp <<<"${ALL_ROWS[$((i - 1))]}"
        if [ "$shape" = 1B ]; then ARGS=("${SHAPE_1B[@]}"); else ARGS=("${SHAPE_8B[@]}"); fi
        ARGS+=(--rank 16 --batch "$batch" --seq "$SEQ" --steps "$STEPS" --warmup "$WARMUP")
        [ "$ckpt" = 1 ] && ARGS+=(--checkpointing)
        [ "$nf4" = 1 ] && ARGS+=(--nf4)
        echo "== row $i: $label, micro-batch $batch, checkpointing $ckpt ($(( DEADLINE - SECONDS )) s left)"
        timeout "$(limit "$tl")" "$BUILD/lorac" bench "${ARGS[@]}" --bf16 --device cuda \
            --compute-dtype bfloat16 >"$LOG/row${i}_lorac.log" 2>&1
        lrc=$?
        echo "   lorac: exit $lrc, $(summary "$LOG/row${i}_lorac.log" '"setup_s":[0-9.]*,"step_s":\[[0-9.,]*\]')"
        timeout "$(limit "$tp")" "$PY" scripts/bench_gpu_peft.py "${ARGS[@]}" --device "$DEV" \
            >"$LOG/row${i}_peft.log" 2>&1
        prc=$?
        echo "   PEFT:  exit $prc, $(summary "$LOG/row${i}_peft.log" '"setup_s": [0-9.]*, "step_s": \[[0-9., ]*\]|"error": "[^"]*"')"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$batch" "$ckpt" "$nf4" "$SEQ" \
            "$LOG/row${i}_lorac.log" "$lrc" "$LOG/row${i}_peft.log" "$prc" >>"$MANIFEST"
    done
    echo "== training: tokens/s (median step), peak memory"
    "$PY" scripts/bench_gpu_report.py train "$MANIFEST" "${TINYFLAG[@]}" | tee "$LOG/train.md"
    [ "${PIPESTATUS[0]}" = 0 ] || rc=1
fi
echo "bench_gpu: $([ $rc = 0 ] && echo "done" || echo "FAILED or a target missed") ($SECONDS s)"
exit $rc
