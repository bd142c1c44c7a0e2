/* merge.h — `lorac merge`: fold a PEFT LoRA adapter into its base model and
 * write a plain Hugging Face model directory.
 *
 * For every adapted linear, W' = W + scaling · (B @ A): the products of B and
 * A are summed in double (exact products, fixed k order, so the result does
 * not depend on threads or FMA), scaled, rounded once to f32 and added to
 * W in f32; W' is written back in the tensor's own dtype (or the requested
 * one) with round-to-nearest-even. Every other tensor is copied bit for bit
 * (converted only when an output dtype is forced). The output keeps the
 * input's shard files, tensor order and model.safetensors.index.json
 * weight_map; config.json, tokenizer and generation files are copied.
 *
 * Memory: one shard at a time. Unchanged tensors are written straight from
 * the input mapping; merged (or converted) tensors get a buffer each, freed
 * when the shard is written, and the shard's input pages are dropped
 * afterwards, so the peak is about one shard (with --dequantize, one shard
 * as written: the dense linears are 4x (BF16) or 8x (F32) their packed size).
 *
 * Everything is written into a fresh staging directory next to the output
 * (OUT.lorac-partial-XXXXXX) that is renamed into place only when all
 * files are written and the verification passed; on any failure (no space,
 * bad input, failed verification) the staging directory is removed and an
 * existing OUT is left untouched.
 *
 * Quantized bases (a bitsandbytes 4-bit checkpoint: config.json has a
 * quantization_config) are refused unless dequantize is set. Then every NF4
 * linear of the blocks is dequantized row by row to f32 (lc_nf4_dequant_rows,
 * exactly the values the NF4 forward pass uses), the adapter's update is
 * added in f32 as above (adapted linears only), and the result is written as
 * a plain [out, in] tensor in the output dtype — BF16 unless dtype says
 * otherwise (LC_MERGE_DTYPE_AUTO means BF16 here, since the packed U8 codes
 * have no float dtype to keep). The bitsandbytes companion tensors
 * (P.weight.absmax, .quant_map, .nested_absmax, .nested_quant_map,
 * .quant_state.*) are dropped (from the shards and the index's weight_map),
 * and config.json loses quantization_config and gets the output dtype. The
 * output is an ordinary dense model. Still one shard at a time.
 *
 * Verification, of the merged model as written (loaded back like any model):
 * - a fixed probe batch (2 rows × 16 pseudo-random token ids) goes through
 *   base + adapter and through the merged model; the largest absolute logit
 *   difference must stay within (LC_MERGE_TOL_ARITH · 2^-24 +
 *   LC_MERGE_TOL_ROUND · u) · max|logit|, u the unit roundoff of the output
 *   dtype (0 for F32, 2^-8 for BF16, 2^-11 for F16): the f32 arithmetic in
 *   another order plus the rounding of the weights, both measured on correct
 *   merges (see verify in merge.c);
 * - every linear of every block, the embeddings and lm_head, element by
 *   element in double: |merged − (W + scaling · B@A)| (W alone where nothing
 *   is merged) must stay within the three roundings the merge makes,
 *   (3 · 2^-24 + u) · (|W| + scaling · Σ_k |B_ik · A_kj|) · (1 + 2^-10) plus
 *   the dtype's subnormal step. This catches a wrong merge far below what
 *   the BF16 logits can show. */
#ifndef LC_MERGE_H
#define LC_MERGE_H

#include <stdbool.h>
#include <stdio.h>

#include "autograd/dtype.h"
#include "autograd/error.h"
#include "train/lora.h"
#include "train/model_config.h"

#define LC_MERGE_DTYPE_AUTO (-1)
#define LC_MERGE_TOL_ARITH 256.0 /* x 2^-24 x max|logit|: 10x the worst f32 merge measured */
#define LC_MERGE_TOL_ROUND 16.0  /* x u x max|logit|: ~2x the worst BF16/F16 merge measured */
#define LC_MERGE_PROBE_ROWS 2
#define LC_MERGE_PROBE_TOKENS 16

typedef struct lc_merge_opts {
    const char *base_dir;      /* Hugging Face model directory */
    const char *adapter_dir;   /* PEFT adapter directory */
    const char *out_dir;       /* must not exist unless force */
    int dtype;                 /* LC_MERGE_DTYPE_AUTO (each tensor keeps its dtype) or
                                * LC_DTYPE_F32 / LC_DTYPE_BF16 / LC_DTYPE_F16: every
                                * float tensor is written in it */
    bool force;                /* replace an existing out_dir */
    bool verify;               /* run the probe batch (default in the CLI) */
    bool dequantize;           /* accept a bitsandbytes NF4 base: dequantize its linears
                                * (no effect on an unquantized base) */
    const char *gguf_type;     /* GGUF base only (train/gguf_merge.h): f32, f16, bf16 or
                                * q8_0 for the merged linears; NULL: as llama.cpp's
                                * export-lora */
} lc_merge_opts;

typedef struct lc_merge_report {
    int n_shards;
    int n_tensors;             /* tensors written */
    int n_merged;              /* linears that received B @ A */
    int n_converted;           /* other tensors converted to the forced dtype */
    int n_dequantized;         /* NF4 linears written dense (merged or not) */
    int n_dropped;             /* bitsandbytes companion tensors left out */
    int out_dtype;             /* the forced output dtype, or LC_MERGE_DTYPE_AUTO */
    int n_files_copied;        /* config, index, tokenizer, generation, ... files */
    char copied[1024];         /* their names, comma-separated (cut when long) */
    double bytes_written;      /* tensor data of all shards */
    double largest_shard_bytes;/* size of the largest input shard file */
    double peak_rss_merge;     /* bytes: getrusage high-water mark when the shards were written */
    double peak_rss_total;     /* bytes: the same at the end (verification loads two models) */
    double seconds_merge, seconds_verify;
    bool low_precision;        /* some merged/converted tensor was written as BF16 or F16 */
    bool corrupted;            /* the test hook changed a merged element */
    bool verified;             /* the probe ran and passed */
    double verify_max_diff;    /* largest |logit difference| (also set when it failed) */
    double verify_max_logit;   /* largest |logit| of base + adapter */
    double verify_tolerance;   /* on the logit difference */
    char verify_rule[96];      /* how verify_tolerance was formed, in words */
    int verify_weights_checked;/* matrices compared element by element */
    bool dora;                 /* the adapter is DoRA: merged as (m / c)·(W + scaling·B@A) */
    double verify_weight_worst;/* largest |merged − (W + scaling·B@A)| (DoRA: times m / its
                                * row norm) / its rounding bound
                                * (≤ 1 passes) */
} lc_merge_report;

/* Runs the merge. Progress lines (one per shard) go to log when not NULL.
 * Returns 0, or -1 with err saying what failed and what to do; report is
 * filled as far as the merge got (verify_max_diff too when the verification
 * failed). */
int lc_merge(const lc_merge_opts *o, lc_merge_report *report, FILE *log, lc_error *err);

/* The merge's building blocks, for other writers of a merged model
 * (`lorac export-gguf`): the adapter of adapter_dir checked against the base
 * config (every tensor's name, layer, module and shape) and loaded, with
 * its scaling (alpha / r, or alpha / sqrt(r) with rsLoRA); and one linear
 * W + scale · (B @ A) (DoRA: each row times m / ‖its row of W + scale·B@A‖,
 * as PEFT's merge_and_unload) computed exactly as lc_merge does, into a new buffer
 * of rows · cols elements of out_dt (*out, malloc'd; the caller frees). */
int lc_merge_load_adapter(const lc_model_config *cfg, const char *base_dir,
                          const char *adapter_dir, lc_lora *lora, double *scale, lc_error *err);
int lc_merge_linear(const char *name, const lc_weight *w, const lc_lora_adapter *ad,
                    double scale, lc_dtype out_dt, void **out, lc_error *err);

/* The verification above, of the merged model at merged_path (a directory
 * or a GGUF file, loaded back as any base) against base_path + lora; the
 * probe's and the weights' figures go to r (verified when both pass). A GGUF
 * merge's untouched tensors, equal in both, add nothing to the tolerance;
 * Q8_0 rounds relative to each 32-element block's largest element (u = 1/254
 * + 2^-11 of it). 0, or -1 with err saying what differs. */
int lc_merge_verify(const char *base_path, const char *merged_path, const lc_lora *lora,
                    lc_merge_report *r, lc_error *err);

/* The test hook of merge.c (LORAC_TEST_CORRUPT_MERGE=X): X when set to a
 * finite number, else 0. */
float lc_merge_test_bump(void);

/* Drops the whole pages of [p, p + n) of a read-only file mapping from RSS
 * (re-read from the file if touched again): a tensor that was written. */
void lc_drop_pages(const void *p, size_t n);

/* Parses auto|bf16|f16|f32 (also bfloat16, float16, float32); 0 or -1. */
int lc_merge_parse_dtype(const char *s, int *dtype);

#endif
