/* device_model.c — see device_model.h. */
#include "train/device_model.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Rows converted on the host per upload of a dense matrix: a staging
 * buffer of at most this many bytes. */
#define STAGE_BYTES ((size_t)16 << 20)

static double dense_bytes(const lc_weight *w)
{
    if (!w->data && !w->nf4 && !w->ggml)
        return 0;
    return w->nf4 ? lc_weight_bytes(w) : (double)w->rows * (double)w->cols * sizeof(lc_real);
}

static bool tied(const lc_model *m)
{
    return m->lm_head.data == m->embed.data && m->lm_head.nf4 == m->embed.nf4 &&
           m->lm_head.ggml == m->embed.ggml;
}

static double rope_bytes(const lc_model *m)
{
    double b = 0;
    for (int k = 0; k < LC_ROPE_TABLE_COUNT; k++)
        if (m->cos_sin[k])
            b += (double)m->rope_len * (double)m->cfg.head_dim * sizeof(lc_real);
    return b;
}

double lc_device_model_weight_bytes(const lc_model *m)
{
    double b = dense_bytes(&m->embed) + (tied(m) ? 0 : dense_bytes(&m->lm_head));
    for (int l = 0; l < m->cfg.n_layers; l++) {
        for (int k = 0; k < LC_MOD_COUNT; k++)
            b += dense_bytes(&m->layers[l].proj[k]);
        b += dense_bytes(&m->layers[l].router);
        for (int i = 0; i < 3 * m->cfg.n_experts; i++)
            b += dense_bytes(&m->layers[l].experts[i]);
    }
    return b + (double)lc_model_small_count(&m->cfg) * sizeof(lc_real) + rope_bytes(m);
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

/* A dense or GGUF matrix converted to lc_real on the host, tile by tile. */
static int upload_dense(lc_device_model *d, lc_weight *w, lc_real *stage, size_t stage_elems,
                        lc_error *err)
{
    lc_real *p = dev_alloc(d, (size_t)(w->rows * w->cols) * sizeof(lc_real), err);
    if (!p)
        return -1;
    int64_t tile = (int64_t)(stage_elems / (size_t)w->cols);
    LC_ASSERT(tile >= 1);
    for (int64_t r0 = 0; r0 < w->rows; r0 += tile) {
        int64_t r1 = r0 + tile < w->rows ? r0 + tile : w->rows;
        lc_weight_rows_to_real(w, r0, r1, stage);
        d->be->upload(d->be, p + r0 * w->cols, stage, (size_t)((r1 - r0) * w->cols) * sizeof(lc_real));
    }
    *w = (lc_weight){.data = p, .dtype = LC_DTYPE_F32, .rows = w->rows, .cols = w->cols};
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

static int upload_model(lc_device_model *d, const lc_model *m, lc_error *err)
{
    const lc_model_config *c = &m->cfg;
    lc_model *dm = &d->model;
    *dm = *m;
    /* the mirror owns nothing of the host model's */
    memset(&dm->files, 0, sizeof dm->files);
    dm->has_files = false;
    dm->owned_weights = NULL;
    dm->nf4 = NULL;
    dm->nf4_experts = NULL;
    dm->gguf = NULL;
    dm->host = m;
    dm->layers = calloc((size_t)c->n_layers + 1, sizeof *dm->layers);
    /* an MoE layer: E·3 experts (gate, up, down at 3e..3e+2) and its router */
    size_t n_exp = (size_t)c->n_experts * 3;
    dm->expert_weights = calloc((size_t)c->n_layers * n_exp + 1, sizeof *dm->expert_weights);
    d->cap_nf4 = (size_t)c->n_layers * (LC_MOD_COUNT + n_exp + 1) + 2;
    d->nf4 = calloc(d->cap_nf4, sizeof *d->nf4);
    size_t stage_elems = STAGE_BYTES / sizeof(lc_real);
    lc_real *stage = malloc(STAGE_BYTES);
    if (!dm->layers || !dm->expert_weights || !d->nf4 || !stage) {
        free(stage);
        return lc_error_set(err, "out of memory for the device model's structure");
    }
    if (m->embed.cols > (int64_t)stage_elems || m->lm_head.cols > (int64_t)stage_elems) {
        free(stage);
        return lc_error_set(err, "hidden size %lld is too large to stage", (long long)m->embed.cols);
    }
    size_t n_small = lc_model_small_count(c);
    lc_real *small = (lc_real *)dev_copy(d, m->small, n_small * sizeof(lc_real), err);
    int rc = small ? 0 : -1;
    dm->small = small;
    if (rc == 0) {
        dm->final_norm = rebase(m->final_norm, m->small, n_small, small);
        rc = upload_weight(d, &dm->embed, stage, stage_elems, err);
    }
    if (rc == 0)
        rc = tied(m) ? (dm->lm_head = dm->embed, 0)
                     : upload_weight(d, &dm->lm_head, stage, stage_elems, err);
    for (int l = 0; rc == 0 && l < c->n_layers; l++) {
        lc_layer_weights *L = &dm->layers[l];
        *L = m->layers[l];
        for (int k = 0; rc == 0 && k < LC_MOD_COUNT; k++) {
            rc = upload_weight(d, &L->proj[k], stage, stage_elems, err);
            L->bias[k] = rebase(m->layers[l].bias[k], m->small, n_small, small);
        }
        for (int k = 0; k < LC_NORM_COUNT; k++)
            L->norm[k] = rebase(m->layers[l].norm[k], m->small, n_small, small);
        L->q_norm = rebase(m->layers[l].q_norm, m->small, n_small, small);
        L->k_norm = rebase(m->layers[l].k_norm, m->small, n_small, small);
        L->experts = n_exp ? dm->expert_weights + (size_t)l * n_exp : NULL;
        if (rc == 0)
            rc = upload_weight(d, &L->router, stage, stage_elems, err);
        for (size_t i = 0; rc == 0 && i < n_exp; i++) {
            L->experts[i] = m->layers[l].experts[i];
            rc = upload_weight(d, &L->experts[i], stage, stage_elems, err);
        }
    }
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
    d->weight_bytes = lc_device_model_weight_bytes(m);
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
