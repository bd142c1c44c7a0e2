/* bnb4.c — reading bitsandbytes 4-bit (NF4) checkpoints: an lc_nf4 view of
 * one quantized linear, pointing into the mapped file (see bnb4.h). */
#include "data/bnb4.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const lc_st_tensor *need(const lc_model_files *mf, const char *name, lc_dtype dt,
                                uint64_t numel, lc_error *err)
{
    const lc_st_tensor *t = lc_model_files_find(mf, name);
    if (!t) {
        lc_error_set(err, "%s: missing tensor '%s' of a bitsandbytes 4-bit checkpoint", mf->dir,
                     name);
        return NULL;
    }
    if (t->dtype != dt || (numel && t->numel != numel)) {
        lc_error_set(err, "%s: tensor '%s' is %s with %llu values, expected %s with %llu",
                     mf->dir, name, lc_dtype_name(t->dtype), (unsigned long long)t->numel,
                     lc_dtype_name(dt), (unsigned long long)numel);
        return NULL;
    }
    return t;
}

int lc_bnb4_view(const lc_model_files *mf, const char *name, int64_t rows, int64_t cols,
                 lc_nf4 *q, lc_error *err)
{
    char key[512];
    memset(q, 0, sizeof *q);
    snprintf(key, sizeof key, "%s.weight.quant_state.bitsandbytes__nf4", name);
    const lc_st_tensor *st = lc_model_files_find(mf, key);
    if (!st) {
        snprintf(key, sizeof key, "%s.weight.quant_state.bitsandbytes__fp4", name);
        if (lc_model_files_find(mf, key))
            return lc_error_set(err, "%s: '%s' is FP4-quantized; only NF4 is supported", mf->dir,
                                name);
        return lc_error_set(err, "%s: missing '%s.weight.quant_state.bitsandbytes__nf4' (not a "
                            "bitsandbytes NF4 checkpoint?)", mf->dir, name);
    }
    if (st->dtype != LC_DTYPE_U8 || st->numel > 65536)
        return lc_error_set(err, "%s: '%s' must be U8 JSON bytes (at most 64 KiB)", mf->dir, key);
    cJSON *js = cJSON_ParseWithLength(st->data, st->numel);
    int rc = -1;
    const cJSON *qt = cJSON_GetObjectItemCaseSensitive(js, "quant_type");
    const cJSON *bs = cJSON_GetObjectItemCaseSensitive(js, "blocksize");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(js, "shape");
    const cJSON *nbs = cJSON_GetObjectItemCaseSensitive(js, "nested_blocksize");
    const cJSON *noff = cJSON_GetObjectItemCaseSensitive(js, "nested_offset");
    if (!cJSON_IsObject(js) || !cJSON_IsString(qt) || strcmp(qt->valuestring, "nf4") != 0) {
        lc_error_set(err, "%s: '%s': expected a JSON object with quant_type \"nf4\"", mf->dir, key);
        goto out;
    }
    if (!cJSON_IsNumber(bs) || bs->valuedouble < 16 || bs->valuedouble > 4096 ||
        bs->valuedouble != floor(bs->valuedouble)) {
        lc_error_set(err, "%s: '%s': blocksize must be an integer in 16..4096", mf->dir, key);
        goto out;
    }
    if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) != 2 ||
        cJSON_GetArrayItem(shape, 0)->valuedouble != (double)rows ||
        cJSON_GetArrayItem(shape, 1)->valuedouble != (double)cols) {
        lc_error_set(err, "%s: '%s': shape must be [%lld, %lld]", mf->dir, key, (long long)rows,
                     (long long)cols);
        goto out;
    }
    if ((rows * cols) % 2) {
        lc_error_set(err, "%s: '%s' has an odd number of values", mf->dir, name);
        goto out;
    }
    q->rows = rows;
    q->cols = cols;
    q->blocksize = (int64_t)bs->valuedouble;
    int64_t nb = lc_nf4_blocks(rows, cols, q->blocksize);
    snprintf(key, sizeof key, "%s.weight", name);
    const lc_st_tensor *w = need(mf, key, LC_DTYPE_U8, (uint64_t)(rows * cols / 2), err);
    if (!w)
        goto out;
    q->codes = w->data;
    snprintf(key, sizeof key, "%s.weight.quant_map", name);
    const lc_st_tensor *qm = need(mf, key, LC_DTYPE_F32, 16, err);
    if (!qm)
        goto out;
    for (int i = 0; i < 16; i++)
        if (fabsf(((const float *)qm->data)[i] - lc_nf4_code[i]) > 1e-6f) {
            lc_error_set(err, "%s: '%s' is not the NF4 code book", mf->dir, key);
            goto out;
        }
    snprintf(key, sizeof key, "%s.weight.absmax", name);
    const lc_st_tensor *am = lc_model_files_find(mf, key);
    if (am && am->dtype == LC_DTYPE_U8) {
        if (!am || am->numel != (uint64_t)nb) {
            lc_error_set(err, "%s: '%s' must hold %lld values", mf->dir, key, (long long)nb);
            goto out;
        }
        if (!cJSON_IsNumber(nbs) || nbs->valuedouble < 1 || nbs->valuedouble > 65536 ||
            !cJSON_IsNumber(noff) || !isfinite(noff->valuedouble)) {
            lc_error_set(err, "%s: '%s.weight.quant_state...': nested_blocksize and "
                         "nested_offset are required with double quantization", mf->dir, name);
            goto out;
        }
        q->absmax_q = am->data;
        q->nested_blocksize = (int64_t)nbs->valuedouble;
        q->offset = (float)noff->valuedouble;
        int64_t nn = lc_nf4_nested_blocks(nb, q->nested_blocksize);
        snprintf(key, sizeof key, "%s.weight.nested_absmax", name);
        const lc_st_tensor *na = need(mf, key, LC_DTYPE_F32, (uint64_t)nn, err);
        snprintf(key, sizeof key, "%s.weight.nested_quant_map", name);
        const lc_st_tensor *nm = na ? need(mf, key, LC_DTYPE_F32, 256, err) : NULL;
        if (!nm)
            goto out;
        q->nested_absmax = na->data;
        q->nested_map = nm->data;
    } else {
        if (!(am = need(mf, key, LC_DTYPE_F32, (uint64_t)nb, err)))
            goto out;
        q->absmax = am->data;
    }
    rc = 0;
out:
    cJSON_Delete(js);
    return rc;
}
