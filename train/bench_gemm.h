/* bench_gemm.h — the GEMM side of `lorac bench`: how many GEMM FLOPs one
 * training step of a shape does (counted from the shape, so a benchmark can
 * say at what rate lorac's GEMM work ran), and `lorac bench --gemm-peak`,
 * the rate this machine's GEMMs reach at the step's shapes (the honest
 * ceiling that rate is compared with: issue #18). */
#ifndef LC_BENCH_GEMM_H
#define LC_BENCH_GEMM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "autograd/error.h"
#include "train/model_config.h"

/* One training step's GEMM FLOPs (2·M·N·K per product), by part. */
typedef struct lc_gemm_flops {
    double frozen;    /* the blocks' frozen linears: forward x·Wᵀ and backward-data dy·W (none
                       * into layer 0's q/k/v input: the embedding needs no gradient) */
    double lora;      /* x·Aᵀ, ·Bᵀ forward; dy·B, dB, dA, dx backward (dx: not into layer 0's
                       * q/k/v input) */
    double attention; /* causal score and value products: S = Q·Kᵀ, O = P·V forward; backward
                       * S again (from the saved log-sum-exp), dP = dO·Vᵀ, dV, dQ, dK; the
                       * visible T·(T+1)/2 pairs of every row and head */
    double lm_head;   /* logits x·Wᵀ and dx = dlogits·W over the supervised rows */
    double recompute; /* gradient checkpointing: every layer's forward (frozen, LoRA,
                       * attention) once more in backward */
    double total;
} lc_gemm_flops;

/* The GEMM FLOPs of one step of a dense model of config cfg with LoRA rank
 * `rank` on every linear of its blocks, batch rows of seq tokens of which
 * n_supervised carry a label. Fails for a Mixture-of-Experts config (not
 * counted). */
int lc_gemm_flops_count(const lc_model_config *cfg, int rank, int64_t batch, int64_t seq,
                        int64_t n_supervised, bool checkpointing, lc_gemm_flops *f,
                        lc_error *err);

/* `lorac bench --gemm-peak`: times the f32 GEMMs (lc_k_gemm: OpenBLAS
 * through lorac's threads; and oneDNN's f32 matmul, which LORAC_CPU_GEMM=onednn
 * runs the weight GEMMs on) and, where the CPU has bf16 units, the bf16 ones
 * at the step's shapes for cfg and M = tokens rows: every block linear's
 * forward (x·Wᵀ) and backward-data (dy·W), the lm_head's in its chunks of
 * lc_k_ce_chunk_rows rows. Prints one JSON line: GFLOP/s per shape (the
 * best of its repetitions) and overall, weighted by each shape's FLOPs in a
 * step. */
int lc_bench_gemm_peak(const lc_model_config *cfg, int64_t tokens, FILE *out, lc_error *err);

#endif
