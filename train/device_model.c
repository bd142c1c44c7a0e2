/* device_model.c — see device_model.h. */
#include "train/device_model.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Rows converted on the host per upload of a dense matrix: a staging
 * buffer of at most this many bytes. */
#define STAGE_BYTES ((size_t)16 << 20)

static double dense_bytes(const lc_weight *w, lc_dtype act)
{
    if (!w->data && !w->nf4 && !w->ggml)
        return 0;
    return w->nf4 ? lc_weight_bytes(w) : (double)w->rows * (double)w->cols * lc_dtype_size(act);
}

static double rope_bytes(const lc_model *m)
{
    double b = 0;
    for (int k = 0; k < LC_ROPE_TABLE_COUNT; k++)
        if (m->cos_sin[k])
            b += (double)m->rope_len * (double)m->cfg.head_dim * sizeof(lc_real);
    return b;
}

double lc_device_model_weight_bytes(const lc_model *m, lc_dtype act)
{
    double b = dense_bytes(&m->embed, act) + (lc_model_tied(m) ? 0 : dense_bytes(&m->lm_head, act));
    for (int l = 0; l < m->cfg.n_layers; l++) {
        for (int k = 0; k < LC_MOD_COUNT; k++)
            b += dense_bytes(&m->layers[l].proj[k], act);
        b += dense_bytes(&m->layers[l].router, act);
        for (int i = 0; i < 3 * m->cfg.n_experts; i++)
            b += dense_bytes(&m->layers[l].experts[i], act);
    }
    return b + (double)lc_model_small_count(&m->cfg) * (double)lc_dtype_size(act) + rope_bytes(m);
}

/* The n lc_real of stage rounded to the activation dtype in place (bf16:
 * packed into the first 2n bytes); returns their bytes. */
static size_t stage_to_act(lc_dtype act, lc_real *stage, int64_t n)
{
    if (act != LC_DTYPE_BF16)
        return (size_t)n * sizeof(lc_real);
    uint16_t *h = (uint16_t *)stage;
    for (int64_t i = 0; i < n; i++) /* h[i] overlaps only stage[≤ i/2], already read */
        h[i] = lc_f32_to_bf16(stage[i]);
    return (size_t)n * sizeof *h;
}

/* A device buffer of `bytes`, owned by d. */
static void *dev_alloc(lc_device_model *d, size_t bytes, lc_error *err)
{
    if (d->n_bufs == d->cap_bufs) {
        size_t cap = d->cap_bufs ? 2 * d->cap_bufs : 64;
        void **b = realloc(d->bufs, cap * sizeof *b);
        if (!b) {
            lc_error_set(err, "out of memory for the device model's buffer list");
            return NULL;
        }
        d->bufs = b;
        d->cap_bufs = cap;
    }
    void *p = d->be->alloc(d->be, bytes, err);
    if (p)
        d->bufs[d->n_bufs++] = p;
    return p;
}

/* An array of n bytes uploaded from src (NULL src: NULL). */
static const void *dev_copy(lc_device_model *d, const void *src, size_t n, lc_error *err)
{
    if (!src)
        return NULL;
    void *p = dev_alloc(d, n, err);
    if (p)
        d->be->upload(d->be, p, src, n);
    return p;
}

/* NF4: the 4-bit codes and scales as they are. */
static int upload_nf4(lc_device_model *d, lc_weight *w, lc_error *err)
{
    const lc_nf4 *q = w->nf4;
    LC_ASSERT(d->n_nf4 < d->cap_nf4);
    lc_nf4 *dq = &d->nf4[d->n_nf4++];
    *dq = *q;
    int64_t nb = lc_nf4_blocks(q->rows, q->cols, q->blocksize);
    int64_t nn = q->absmax_q ? lc_nf4_nested_blocks(nb, q->nested_blocksize) : 0;
    dq->codes = dev_copy(d, q->codes, (size_t)(q->rows * q->cols / 2), err);
    if (!dq->codes)
        return -1;
    if (q->absmax && !(dq->absmax = dev_copy(d, q->absmax, (size_t)nb * sizeof(float), err)))
        return -1;
    if (q->absmax_q) {
        if (!(dq->absmax_q = dev_copy(d, q->absmax_q, (size_t)nb, err)) ||
            !(dq->nested_absmax = dev_copy(d, q->nested_absmax, (size_t)nn * sizeof(float), err)) ||
            !(dq->nested_map = dev_copy(d, q->nested_map, 256 * sizeof(float), err)))
            return -1;
    }
    w->nf4 = dq;
    w->data = NULL;
    return 0;
}

/* A dense or GGUF matrix converted to the activation dtype on the host,
 * tile by tile (through lc_real: a BF16 weight stays exact). */
static int upload_dense(lc_device_model *d, lc_weight *w, lc_real *stage, size_t stage_elems,
                        lc_error *err)
{
    lc_dtype act = d->be->act;
    char *p = dev_alloc(d, (size_t)(w->rows * w->cols) * lc_dtype_size(act), err);
    if (!p)
        return -1;
    int64_t tile = (int64_t)(stage_elems / (size_t)w->cols);
    LC_ASSERT(tile >= 1);
    for (int64_t r0 = 0; r0 < w->rows; r0 += tile) {
        int64_t r1 = r0 + tile < w->rows ? r0 + tile : w->rows;
        lc_weight_rows_to_real(w, r0, r1, stage);
        size_t bytes = stage_to_act(act, stage, (r1 - r0) * w->cols);
        d->be->upload(d->be, p + (size_t)(r0 * w->cols) * lc_dtype_size(act), stage, bytes);
    }
    *w = (lc_weight){.data = p, .dtype = act, .rows = w->rows, .cols = w->cols};
    return 0;
}

static int upload_weight(lc_device_model *d, lc_weight *w, lc_real *stage, size_t stage_elems,
                         lc_error *err)
{
    if (w->nf4)
        return upload_nf4(d, w, err);
    if (!w->data && !w->ggml)
        return 0; /* a module the family does not have */
    return upload_dense(d, w, stage, stage_elems, err);
}

/* p (inside the host buffer [base, base + n)) moved to the same offset of dev. */
static lc_real *rebase(const lc_real *p, const lc_real *base, size_t n, lc_real *dev)
{
    if (!p)
        return NULL;
    LC_ASSERT(p >= base && p < base + n);
    return dev + (p - base);
}

/* The same for a vector of the host model's small buffer, whose device copy
 * holds activation-dtype elements. */
static lc_real *rebase_small(const lc_device_model *d, const lc_real *p, char *dev)
{
    const lc_model *m = d->model.host;
    if (!p)
        return NULL;
    LC_ASSERT(p >= m->small && p < m->small + lc_model_small_count(&m->cfg));
    return (lc_real *)(dev + (size_t)(p - m->small) * lc_dtype_size(d->be->act));
}

/* The mirror's host structs: m's, owning nothing of m's, with their own
 * layer and expert arrays (copies of m's: element pointers still the host's
 * until the upload replaces them). An MoE layer has E·3 experts (gate, up,
 * down at 3e..3e+2) and its router. */
static int mirror_structs(lc_model *dm, const lc_model *m, lc_error *err)
{
    const lc_model_config *c = &m->cfg;
    *dm = *m;
    memset(&dm->files, 0, sizeof dm->files);
    dm->has_files = false;
    dm->owned_weights = NULL;
    dm->nf4 = NULL;
    dm->nf4_experts = NULL;
    dm->gguf = NULL;
    dm->host = m;
    size_t n_exp = (size_t)c->n_experts * 3;
    dm->layers = calloc((size_t)c->n_layers + 1, sizeof *dm->layers);
    dm->expert_weights = calloc((size_t)c->n_layers * n_exp + 1, sizeof *dm->expert_weights);
    if (!dm->layers || !dm->expert_weights)
        return lc_error_set(err, "out of memory for the device model's structure");
    for (int l = 0; l < c->n_layers; l++) {
        lc_layer_weights *L = &dm->layers[l];
        *L = m->layers[l];
        L->experts = n_exp ? dm->expert_weights + (size_t)l * n_exp : NULL;
        for (size_t i = 0; i < n_exp; i++)
            L->experts[i] = m->layers[l].experts[i];
    }
    return 0;
}

typedef struct upload_ctx {
    lc_device_model *d;
    lc_real *stage;
    size_t stage_elems;
    lc_error *err;
} upload_ctx;

static int upload_one(lc_weight *w, void *ctx)
{
    upload_ctx *u = ctx;
    return upload_weight(u->d, w, u->stage, u->stage_elems, u->err);
}

static int upload_model(lc_device_model *d, const lc_model *m, lc_error *err)
{
    const lc_model_config *c = &m->cfg;
    lc_model *dm = &d->model;
    if (mirror_structs(dm, m, err))
        return -1;
    d->cap_nf4 = (size_t)c->n_layers * (LC_MOD_COUNT + (size_t)c->n_experts * 3 + 1) + 2;
    d->nf4 = calloc(d->cap_nf4, sizeof *d->nf4);
    size_t stage_elems = STAGE_BYTES / sizeof(lc_real);
    lc_real *stage = malloc(STAGE_BYTES);
    if (!d->nf4 || !stage) {
        free(stage);
        return lc_error_set(err, "out of memory for the device model's structure");
    }
    if (m->embed.cols > (int64_t)stage_elems || m->lm_head.cols > (int64_t)stage_elems) {
        free(stage);
        return lc_error_set(err, "hidden size %lld is too large to stage", (long long)m->embed.cols);
    }
    /* norm weights and biases: the activation dtype, staged a tile at a time */
    size_t n_small = lc_model_small_count(c);
    lc_dtype act = d->be->act;
    char *small = dev_alloc(d, (n_small ? n_small : 1) * lc_dtype_size(act), err);
    for (size_t i0 = 0; small && i0 < n_small; i0 += stage_elems) {
        size_t n = n_small - i0 < stage_elems ? n_small - i0 : stage_elems;
        memcpy(stage, m->small + i0, n * sizeof(lc_real));
        d->be->upload(d->be, small + i0 * lc_dtype_size(act), stage,
                      stage_to_act(act, stage, (int64_t)n));
    }
    if (!small) {
        free(stage);
        return -1;
    }
    dm->small = (lc_real *)small;
    dm->final_norm = rebase_small(d, m->final_norm, small);
    for (int l = 0; l < c->n_layers; l++) {
        lc_layer_weights *L = &dm->layers[l];
        const lc_layer_weights *H = &m->layers[l];
        for (int k = 0; k < LC_MOD_COUNT; k++)
            L->bias[k] = rebase_small(d, H->bias[k], small);
        for (int k = 0; k < LC_NORM_COUNT; k++)
            L->norm[k] = rebase_small(d, H->norm[k], small);
        L->q_norm = rebase_small(d, H->q_norm, small);
        L->k_norm = rebase_small(d, H->k_norm, small);
    }
    upload_ctx u = {d, stage, stage_elems, err};
    int rc = lc_model_each_weight(dm, lc_model_tied(m), upload_one, &u);
    free(stage);
    for (int k = 0; rc == 0 && k < LC_ROPE_TABLE_COUNT; k++) {
        if (!m->cos_sin[k])
            continue;
        size_t n = (size_t)m->rope_len * (size_t)c->head_dim * sizeof(lc_real);
        if (!(dm->cos_sin[k] = (lc_real *)dev_copy(d, m->cos_sin[k], n, err)))
            rc = -1;
    }
    return rc;
}

/* A dense or GGUF matrix as upload_dense leaves it: act elements (its data
 * pointer stays a host one, never read by a dry run; NF4 as it is). */
static int view_one(lc_weight *w, void *ctx)
{
    if (w->nf4 || (!w->data && !w->ggml))
        return 0;
    const void *data = w->data ? w->data : (const void *)w->ggml;
    *w = (lc_weight){.data = data, .dtype = *(const lc_dtype *)ctx, .rows = w->rows,
                     .cols = w->cols};
    return 0;
}

int lc_device_model_view(const lc_model *m, lc_dtype act, lc_model *view, lc_error *err)
{
    if (mirror_structs(view, m, err)) {
        lc_device_model_view_free(view);
        return -1;
    }
    return lc_model_each_weight(view, lc_model_tied(m), view_one, &act);
}

void lc_device_model_view_free(lc_model *view)
{
    free(view->layers);
    free(view->expert_weights);
    view->layers = NULL;
    view->expert_weights = NULL;
}

/* The mirror of a host LoRA tensor: its data and grad moved into the device
 * params and grads at the same offsets. */
static void mirror_tensor(lc_tensor *dt, const lc_tensor *t, const lc_lora *lora,
                          const lc_lora *dl)
{
    *dt = *t;
    dt->data = rebase(t->data, lora->params, lora->n_params, dl->params);
    dt->grad = rebase(t->grad, lora->grads, lora->n_params, dl->grads);
}

/* Each expert's adapter (views into its module's A and B): the same slots,
 * pointing at mirrored tensors. */
static int mirror_expert_views(lc_lora *dl, const lc_lora *lora, lc_error *err)
{
    size_t n_views = lc_lora_expert_view_count(lora);
    dl->expert_views = calloc(n_views + 1, sizeof *dl->expert_views);
    dl->expert_tensors = calloc(2 * n_views + 1, sizeof *dl->expert_tensors);
    if (!dl->expert_views || !dl->expert_tensors)
        return lc_error_set(err, "out of memory for the device LoRA's expert views");
    for (size_t v = 0; v < n_views; v++) {
        lc_lora_adapter *ad = &dl->expert_views[v];
        *ad = lora->expert_views[v];
        if (!ad->A)
            continue; /* a slot of the module that is not targeted */
        lc_tensor **parts[2] = {&ad->A, &ad->B};
        for (int k = 0; k < 2; k++) {
            size_t i = (size_t)(*parts[k] - lora->expert_tensors);
            LC_ASSERT(i < 2 * n_views);
            mirror_tensor(&dl->expert_tensors[i], *parts[k], lora, dl);
            *parts[k] = &dl->expert_tensors[i];
        }
    }
    return 0;
}

static int upload_lora(lc_device_model *d, const lc_lora *lora, lc_error *err)
{
    lc_lora *dl = &d->lora;
    *dl = *lora;
    size_t n = lora->n_params, bytes = (n ? n : 1) * sizeof(lc_real);
    size_t n_adapters = (size_t)lora->n_layers * LC_MOD_COUNT;
    dl->tensors = calloc(lora->n_tensors + 1, sizeof *dl->tensors);
    dl->adapters = calloc(n_adapters + 1, sizeof *dl->adapters);
    dl->expert_views = NULL;
    dl->expert_tensors = NULL;
    if (!dl->tensors || !dl->adapters)
        return lc_error_set(err, "out of memory for the device LoRA structure");
    if (!(dl->params = dev_alloc(d, bytes, err)) || !(dl->grads = dev_alloc(d, bytes, err)))
        return -1;
    d->be->upload(d->be, dl->params, lora->params, n * sizeof(lc_real));
    d->be->memset0(d->be, dl->grads, bytes);
    for (size_t i = 0; i < lora->n_tensors; i++)
        mirror_tensor(&dl->tensors[i], &lora->tensors[i], lora, dl);
    if (mirror_expert_views(dl, lora, err))
        return -1;
    /* a frozen DoRA adapter's held norms: one buffer, adapter after adapter */
    size_t n_norms = 0;
    for (size_t a = 0; lora->frozen_norms && a < n_adapters; a++) {
        const lc_lora_adapter *ad = &lora->adapters[a];
        if (ad->norm && ad->m) {
            size_t end = (size_t)(ad->norm - lora->frozen_norms) + (size_t)ad->m->numel;
            n_norms = end > n_norms ? end : n_norms;
        }
    }
    if (n_norms && !(dl->frozen_norms = (lc_real *)dev_copy(d, lora->frozen_norms,
                                                              n_norms * sizeof(lc_real), err)))
        return -1;
    for (size_t a = 0; a < n_adapters; a++) {
        lc_lora_adapter *ad = &dl->adapters[a];
        *ad = lora->adapters[a];
        lc_tensor **parts[3] = {&ad->A, &ad->B, &ad->m};
        for (int k = 0; k < 3; k++)
            if (*parts[k])
                *parts[k] = dl->tensors + (*parts[k] - lora->tensors);
        ad->norm = n_norms ? rebase(ad->norm, lora->frozen_norms, n_norms, dl->frozen_norms) : NULL;
    }
    return 0;
}

int lc_device_model_upload(lc_device_model *d, lc_backend *be, const lc_model *m,
                           const lc_lora *lora, lc_error *err)
{
    memset(d, 0, sizeof *d);
    d->be = be;
    if (upload_model(d, m, err) || (lora && upload_lora(d, lora, err))) {
        lc_device_model_free(d);
        return lc_error_prefix(err, "uploading the model to %s", be->name);
    }
    d->weight_bytes = lc_device_model_weight_bytes(m, be->act);
    return be->sync(be, err) ? lc_error_prefix(err, "uploading the model to %s", be->name) : 0;
}

void lc_device_model_free(lc_device_model *d)
{
    for (size_t i = 0; i < d->n_bufs; i++)
        d->be->free(d->be, d->bufs[i]);
    free(d->bufs);
    free(d->nf4);
    free(d->model.layers);
    free(d->model.expert_weights);
    free(d->lora.tensors);
    free(d->lora.adapters);
    free(d->lora.expert_views);
    free(d->lora.expert_tensors);
    memset(d, 0, sizeof *d);
}

void lc_device_lora_download(const lc_device_model *d, lc_lora *host)
{
    LC_ASSERT(host->n_params == d->lora.n_params);
    d->be->download(d->be, host->params, d->lora.params, host->n_params * sizeof(lc_real));
}

void lc_device_lora_upload(const lc_device_model *d, const lc_lora *host)
{
    LC_ASSERT(host->n_params == d->lora.n_params);
    d->be->upload(d->be, d->lora.params, host->params, host->n_params * sizeof(lc_real));
}
