/* gguf_export.c — `lorac export-gguf` (see gguf_export.h): plan the tensors
 * (names, shapes, types), write the header, then each tensor in turn: read
 * as f32 (merged with the adapter where adapted), permuted, converted,
 * written; all into a temporary file renamed into place at the end. */
#include "train/gguf_export.h"
#include "train/family.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "autograd/dtype.h"
#include "data/ggml_quants.h"
#include "data/gguf_write.h"
#include "autograd/ggml_weight.h"
#include "data/model_files.h"
#include "train/gguf_model.h"
#include "train/gguf_names.h"
#include "train/gguf_vocab.h"
#include "train/lora.h"
#include "train/merge.h"
#include "train/model_config.h"
#include "train/staging.h"
#include "train/sysinfo.h"

#define Q8_BLOCK 32

int lc_gguf_export_parse_type(const char *s, uint32_t *type)
{
    if (!strcmp(s, "f32"))
        *type = LC_GGML_F32;
    else if (!strcmp(s, "f16"))
        *type = LC_GGML_F16;
    else if (!strcmp(s, "bf16"))
        *type = LC_GGML_BF16;
    else if (!strcmp(s, "q8_0"))
        *type = LC_GGML_Q8_0;
    else
        return -1;
    return 0;
}

/* llama.cpp's LlamaFileType for the output type */
static uint32_t file_type(uint32_t t)
{
    return t == LC_GGML_F32 ? 0 : t == LC_GGML_F16 ? 1 : t == LC_GGML_Q8_0 ? 7 : 32;
}

/* ------------------------------------------------------------------ */
/* element conversions, as numpy / gguf-py                             */

/* gguf-py's __quantize_bf16: NaN made quiet (bit 22 set, sign and upper
 * payload kept), then round to nearest even on the upper 16 bits. */
static uint16_t bf16_gguf(float f)
{
    uint32_t n;
    memcpy(&n, &f, 4);
    if ((n & 0x7fffffffu) > 0x7f800000u)
        n = (n & 0xffff0000u) | (64u << 16);
    return (uint16_t)((n + (0x7fffu + ((n >> 16) & 1u))) >> 16);
}

/* gguf-py's Q8_0.quantize_blocks on one block of 32 floats: d = max|x| / 127
 * and id = 1 / d in float32, q = round-half-away(x · id), d stored as f16. */
static void q8_0_block(const float *x, unsigned char *out)
{
    float amax = 0;
    for (int i = 0; i < Q8_BLOCK; i++) {
        float a = fabsf(x[i]);
        if (a > amax || isnan(a))
            amax = a;
    }
    volatile float d = amax / 127.0f; /* float32 division, never contracted */
    float id = d == 0.0f ? 0.0f : 1.0f / d;
    uint16_t h = lc_f32_to_f16(d);
    out[0] = (unsigned char)h;
    out[1] = (unsigned char)(h >> 8);
    for (int i = 0; i < Q8_BLOCK; i++) {
        volatile float p = x[i] * id;
        float r = roundf(p); /* np_roundf: half away from zero */
        out[2 + i] = (unsigned char)(int8_t)(int)r;
    }
}

void lc_gguf_export_convert(const float *x, uint64_t n, uint32_t type, unsigned char *out)
{
    if (type == LC_GGML_F32) {
        memcpy(out, x, n * 4);
    } else if (type == LC_GGML_F16 || type == LC_GGML_BF16) {
        for (uint64_t i = 0; i < n; i++) {
            uint16_t h = type == LC_GGML_F16 ? lc_f32_to_f16(x[i]) : bf16_gguf(x[i]);
            out[2 * i] = (unsigned char)h;
            out[2 * i + 1] = (unsigned char)(h >> 8);
        }
    } else {
        for (uint64_t b = 0; b < n / Q8_BLOCK; b++)
            q8_0_block(x + b * Q8_BLOCK, out + b * (2 + Q8_BLOCK));
    }
}

/* ------------------------------------------------------------------ */
/* the plan                                                            */

typedef struct item {
    char name[128];              /* GGUF tensor name */
    const lc_st_tensor *src;     /* base tensor, or NULL (rope_freqs, LoRA A/B) */
    int n_dims;
    int64_t ne[2];               /* ggml order */
    uint32_t type;
    int perm_heads;              /* > 0: rows permuted as LlamaModel.permute with these heads */
    const lc_lora_adapter *ad;   /* merged linear, or the LoRA of a lora_a/lora_b item */
    int lora_part;               /* 1: lora_a, 2: lora_b */
} item;

typedef struct job {
    const lc_gguf_export_opts *o;
    lc_gguf_export_report *r;
    FILE *log;
    lc_model_config cfg;
    bool llama;                  /* llama.cpp architecture "llama" (Llama, Mistral) */
    lc_model_files mf;
    bool mf_open;
    lc_lora lora;
    bool lora_loaded;
    double scale;
    item *items;
    size_t n_items, cap_items;
    uint64_t n_params;
    lc_gguf_writer *w;
} job;

static item *new_item(job *j, lc_error *err)
{
    if (j->n_items == j->cap_items) {
        size_t cap = j->cap_items ? 2 * j->cap_items : 64;
        item *it = realloc(j->items, cap * sizeof *it);
        if (!it) {
            lc_error_set(err, "out of memory");
            return NULL;
        }
        j->items = it;
        j->cap_items = cap;
    }
    item *it = &j->items[j->n_items++];
    memset(it, 0, sizeof *it);
    return it;
}

/* The type of a tensor as the converter chooses it. */
static uint32_t pick_type(const job *j, const char *name, int n_dims, int64_t ne0)
{
    size_t n = strlen(name);
    if (n_dims <= 1 || (n >= 12 && !strcmp(name + n - 12, "_norm.weight")))
        return LC_GGML_F32;
    if (j->o->type == LC_GGML_Q8_0 && ne0 % Q8_BLOCK != 0)
        return LC_GGML_F16; /* gguf-py's QuantError: "falling back to F16" */
    return j->o->type;
}

/* The GGUF name of HF tensor `hf` into out (train/gguf_names.h); *layer,
 * *mod (-1: not a linear weight) and *qk (1 q, 2 k, else 0) describe it. 1
 * when the tensor is to be skipped, -1 when unknown. */
static int map_name(const job *j, const char *hf, char *out, size_t n, int *layer, int *mod,
                    int *qk)
{
    *qk = 0;
    if (strstr(hf, "rotary_emb.inv_freq"))
        return 1;
    if (lc_gguf_name_from_hf(hf, j->cfg.n_layers, out, n, layer, mod))
        return -1;
    const char *rest = *layer >= 0 ? strchr(hf + strlen("model.layers."), '.') + 1 : "";
    *qk = !strncmp(rest, "self_attn.q_proj.", 17)   ? 1
          : !strncmp(rest, "self_attn.k_proj.", 17) ? 2 : 0;
    return 0;
}

static bool is_float_dtype(lc_dtype t)
{
    return t == LC_DTYPE_F32 || t == LC_DTYPE_BF16 || t == LC_DTYPE_F16;
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp((*(const lc_st_tensor *const *)a)->name,
                  (*(const lc_st_tensor *const *)b)->name);
}

/* Model tensors: rope_freqs first (as the converter), then every tensor of
 * each shard in name order (safetensors' key order, the converter's). */
static int plan_model(job *j, lc_error *err)
{
    if (j->llama && j->cfg.rope_type == LC_ROPE_LLAMA3) {
        item *it = new_item(j, err);
        if (!it)
            return -1;
        snprintf(it->name, sizeof it->name, "rope_freqs.weight");
        it->n_dims = 1;
        it->ne[0] = j->cfg.head_dim / 2;
        it->ne[1] = 1;
        it->type = LC_GGML_F32;
    }
    for (size_t s = 0; s < j->mf.n_shards; s++) {
        lc_st_file *f = &j->mf.shards[s];
        const lc_st_tensor **order = malloc((f->n_tensors ? f->n_tensors : 1) * sizeof *order);
        if (!order)
            return lc_error_set(err, "out of memory");
        for (size_t i = 0; i < f->n_tensors; i++)
            order[i] = &f->tensors[i];
        qsort(order, f->n_tensors, sizeof *order, cmp_tensor_name);
        for (size_t i = 0; i < f->n_tensors; i++) {
            const lc_st_tensor *t = order[i];
            char gname[128];
            int layer, mod, qk;
            int m = map_name(j, t->name, gname, sizeof gname, &layer, &mod, &qk);
            if (m == 1)
                continue;
            if (m < 0) {
                free(order);
                return lc_error_set(err, "%s: tensor '%s' has no GGUF name lorac knows for "
                                    "architecture %s", j->o->base_dir, t->name,
                                    lc_arch_name(j->cfg.arch));
            }
            if (!is_float_dtype(t->dtype) || t->ndim < 1 || t->ndim > 2) {
                free(order);
                return lc_error_set(err, "%s: tensor '%s' is %s with %d dimensions; export-gguf "
                                    "takes F32/BF16/F16 tensors of 1 or 2 dimensions (for a "
                                    "bitsandbytes model, `lorac merge --dequantize` first)",
                                    j->o->base_dir, t->name, lc_dtype_name(t->dtype), t->ndim);
            }
            item *it = new_item(j, err);
            if (!it) {
                free(order);
                return -1;
            }
            snprintf(it->name, sizeof it->name, "%s", gname);
            it->src = t;
            it->n_dims = t->ndim;
            it->ne[0] = t->shape[t->ndim - 1];
            it->ne[1] = t->ndim == 2 ? t->shape[0] : 1;
            it->type = pick_type(j, gname, it->n_dims, it->ne[0]);
            if (j->llama && qk)
                it->perm_heads = qk == 1 ? j->cfg.n_heads : j->cfg.n_kv_heads;
            if (j->lora_loaded && layer >= 0 && mod >= 0)
                it->ad = lc_lora_get(&j->lora, layer, (lc_module)mod);
            j->n_params += (uint64_t)t->numel;
        }
        free(order);
    }
    return 0;
}

/* LoRA tensors: for each layer, the adapted modules in the HF name order of
 * the adapter file (mlp.down, gate, up, then self_attn.k, o, q, v). */
static int plan_lora(job *j, lc_error *err)
{
    static const lc_module order[] = {LC_MOD_DOWN, LC_MOD_GATE, LC_MOD_UP, LC_MOD_K,
                                      LC_MOD_O, LC_MOD_Q, LC_MOD_V};
    for (int l = 0; l < j->cfg.n_layers; l++)
        for (size_t k = 0; k < sizeof order / sizeof order[0]; k++) {
            const lc_lora_adapter *ad = lc_lora_get(&j->lora, l, order[k]);
            if (!ad)
                continue;
            int64_t out, in, r = ad->A->shape[0];
            lc_module_shape(&j->cfg, order[k], &out, &in);
            for (int part = 1; part <= 2; part++) {
                item *it = new_item(j, err);
                if (!it)
                    return -1;
                snprintf(it->name, sizeof it->name, "blk.%d.%s.weight.lora_%c", l,
                         lc_gguf_linear_name(order[k]), part == 1 ? 'a' : 'b');
                it->n_dims = 2;
                it->ne[0] = part == 1 ? in : r;
                it->ne[1] = part == 1 ? r : out;
                it->type = pick_type(j, it->name, 2, it->ne[0]);
                it->ad = ad;
                it->lora_part = part;
                if (part == 2 && j->llama && (order[k] == LC_MOD_Q || order[k] == LC_MOD_K))
                    it->perm_heads = order[k] == LC_MOD_Q ? j->cfg.n_heads : j->cfg.n_kv_heads;
            }
        }
    return 0;
}

/* ------------------------------------------------------------------ */
/* metadata                                                            */

static void add_str(lc_gguf_writer *w, const char *k, const char *v)
{
    lc_gguf_add_str(w, k, v, strlen(v));
}

/* Python's str.title() of the directory's base name, as the converter names
 * a model without a model card ("model" -> "Model"). */
static void dir_title(const char *dir, char *out, size_t n)
{
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        len--;
    size_t b = len;
    while (b > 0 && dir[b - 1] != '/')
        b--;
    size_t k = 0;
    bool prev_alpha = false;
    for (size_t i = b; i < len && k + 1 < n; i++) {
        char c = dir[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (alpha)
            c = prev_alpha ? (char)(c | 0x20) : (char)(c & ~0x20);
        out[k++] = c;
        prev_alpha = alpha;
    }
    out[k] = '\0';
}

/* gguf-py's model_weight_count_rounded_notation(n, min_digits=2) */
static void size_label(uint64_t n, char *out, size_t len)
{
    double x = (double)n;
    double s;
    const char *suf;
    if (x > 1e12) {
        s = x * 1e-12;
        suf = "T";
    } else if (x > 1e9) {
        s = x * 1e-9;
        suf = "B";
    } else if (x > 1e6) {
        s = x * 1e-6;
        suf = "M";
    } else {
        s = x * 1e-3;
        suf = "K";
    }
    char digits[64];
    snprintf(digits, sizeof digits, "%.0f", nearbyint(s)); /* round(): half to even */
    const char *d = digits;
    while (*d == '0')
        d++;
    int fix = 2 - (int)strlen(d);
    if (fix < 0)
        fix = 0;
    snprintf(out, len, "%.*f%s", fix, s, suf);
}

static void add_model_meta(job *j)
{
    const lc_model_config *c = &j->cfg;
    lc_gguf_writer *w = j->w;
    const char *a = j->r->arch;
    char k[96], name[256], label[32];
#define KEY(suffix) (snprintf(k, sizeof k, "%s.%s", a, suffix), k)
    add_str(w, "general.architecture", a);
    add_str(w, "general.type", "model");
    dir_title(j->o->base_dir, name, sizeof name);
    add_str(w, "general.name", name);
    size_label(j->n_params, label, sizeof label);
    add_str(w, "general.size_label", label);
    lc_gguf_add_u32(w, KEY("block_count"), (uint32_t)c->n_layers);
    lc_gguf_add_u32(w, KEY("context_length"), (uint32_t)c->max_position_embeddings);
    lc_gguf_add_u32(w, KEY("embedding_length"), (uint32_t)c->hidden_size);
    lc_gguf_add_u32(w, KEY("feed_forward_length"), (uint32_t)c->intermediate_size);
    lc_gguf_add_u32(w, KEY("attention.head_count"), (uint32_t)c->n_heads);
    lc_gguf_add_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_kv_heads);
    if (c->rope_type == LC_ROPE_LINEAR) {
        add_str(w, KEY("rope.scaling.type"), "linear");
        lc_gguf_add_f32(w, KEY("rope.scaling.factor"), (float)c->rope_factor);
    }
    lc_gguf_add_f32(w, KEY("rope.freq_base"), (float)c->rope_theta);
    lc_gguf_add_f32(w, KEY("attention.layer_norm_rms_epsilon"), (float)c->rms_norm_eps);
    lc_gguf_add_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim);
    lc_gguf_add_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim);
    lc_gguf_add_u32(w, "general.file_type", file_type(j->o->type));
    if (j->llama) {
        lc_gguf_add_u32(w, KEY("vocab_size"), (uint32_t)c->vocab_size);
        lc_gguf_add_u32(w, KEY("rope.dimension_count"), (uint32_t)c->head_dim);
    }
    lc_gguf_add_u32(w, "general.quantization_version", 2);
    lc_gguf_add_u32(w, "general.alignment", 32);
#undef KEY
}

static void add_lora_meta(job *j)
{
    lc_gguf_writer *w = j->w;
    char name[256];
    add_str(w, "general.architecture", j->r->arch);
    add_str(w, "general.type", "adapter");
    add_str(w, "adapter.type", "lora");
    dir_title(j->o->adapter_dir, name, sizeof name);
    add_str(w, "general.name", name);
    double alpha = j->lora.cfg.alpha;
    if (j->lora.cfg.use_rslora) /* llama.cpp scales by alpha / r */
        alpha *= sqrt((double)j->lora.cfg.r);
    lc_gguf_add_f32(w, "adapter.lora.alpha", (float)alpha);
    lc_gguf_add_u32(w, "general.quantization_version", 2);
    lc_gguf_add_u32(w, "general.alignment", 32);
}

/* ------------------------------------------------------------------ */
/* tensor data                                                         */

/* Llama 3 rope_freqs, as LlamaModel.generate_extra_tensors computes them
 * in torch float32. */
static void rope_freqs(const lc_model_config *c, float *out)
{
    const int dim = c->head_dim;
    const float base = (float)c->rope_theta;
    const double factor = c->rope_factor, lo = c->rope_low_freq_factor,
                 hi = c->rope_high_freq_factor, old = c->rope_original_max_position;
    const float low_wl = (float)(old / lo), high_wl = (float)(old / hi);
    for (int i = 0; i < dim / 2; i++) {
        volatile float e = (float)(2 * i) / (float)dim;
        volatile float p = powf(base, e);
        volatile float freq = 1.0f / p;
        volatile float wl = (float)(2 * M_PI) / freq;
        if (wl < high_wl) {
            out[i] = 1.0f;
        } else if (wl > low_wl) {
            out[i] = (float)factor;
        } else {
            volatile float t = (float)old / wl;
            volatile float smooth = (t - (float)lo) / (float)(hi - lo);
            volatile float q = (1.0f - smooth) / (float)factor;
            out[i] = 1.0f / (q + smooth);
        }
    }
}

/* numel values of base tensor t as f32 into out; the input pages read are
 * dropped from RSS every DROP elements, so the peak is the f32 copy, not
 * the copy plus the mapped input. */
static void read_f32(const lc_st_tensor *t, float *out)
{
    enum { CHUNK = 4096, DROP = 1 << 20 };
    lc_real buf[CHUNK];
    const size_t es = lc_dtype_size(t->dtype);
    const unsigned char *data = t->data;
    uint64_t dropped = 0;
    for (uint64_t i0 = 0; i0 < t->numel; i0 += CHUNK) {
        uint64_t n = t->numel - i0 < CHUNK ? t->numel - i0 : CHUNK;
        const lc_weight part = {data + i0 * es, t->dtype, 1, (int64_t)n, NULL, NULL};
        lc_weight_rows_to_real(&part, 0, 1, buf);
        for (uint64_t k = 0; k < n; k++)
            out[i0 + k] = (float)buf[k];
        if (i0 + n - dropped >= DROP) {
            lc_drop_pages(data + dropped * es, (size_t)((i0 + n - dropped) * es));
            dropped = i0 + n;
        }
    }
}

/* LlamaModel.permute: each HF row to its gguf row (lc_llama_gguf_row). */
static int permute_rows(float *x, int64_t rows, int64_t cols, int heads, lc_error *err)
{
    if (heads <= 0 || rows % (2 * heads))
        return lc_error_set(err, "cannot permute %lld rows for %d heads", (long long)rows, heads);
    float *tmp = malloc((size_t)(rows * cols) * sizeof *tmp);
    if (!tmp)
        return lc_error_set(err, "out of memory");
    for (int64_t r = 0; r < rows; r++)
        memcpy(tmp + lc_llama_gguf_row(rows, heads, r) * cols, x + r * cols,
               (size_t)cols * sizeof *x);
    memcpy(x, tmp, (size_t)(rows * cols) * sizeof *x);
    free(tmp);
    return 0;
}

/* The f32 values of item it (malloc'd into *out). */
static int item_values(job *j, const item *it, float **out, lc_error *err)
{
    const uint64_t n = (uint64_t)(it->ne[0] * it->ne[1]);
    float *x = NULL;
    if (it->src && it->ad) {
        const lc_st_tensor *t = it->src;
        const lc_weight w = {t->data, t->dtype, t->shape[0], t->shape[1], NULL, NULL};
        void *buf;
        if (lc_merge_linear(t->name, &w, it->ad, j->scale, LC_DTYPE_F32, &buf, err))
            return -1;
        x = buf;
        j->r->n_merged++;
    } else {
        if (!(x = malloc((size_t)n * sizeof *x)))
            return lc_error_set(err, "out of memory for tensor '%s'", it->name);
        if (it->src) {
            read_f32(it->src, x);
        } else if (it->lora_part) {
            const lc_tensor *m = it->lora_part == 1 ? it->ad->A : it->ad->B;
            for (uint64_t i = 0; i < n; i++)
                x[i] = (float)m->data[i];
        } else {
            rope_freqs(&j->cfg, x);
        }
    }
    if (it->src) /* read: its input pages are not needed again */
        lc_drop_pages(it->src->data, (size_t)(it->src->end - it->src->begin));
    if (it->perm_heads && permute_rows(x, it->ne[1], it->ne[0], it->perm_heads, err)) {
        free(x);
        return -1;
    }
    *out = x;
    return 0;
}

static int write_tensors(job *j, FILE *f, lc_error *err)
{
    for (size_t i = 0; i < j->n_items; i++) {
        const item *it = &j->items[i];
        float *x = NULL;
        if (item_values(j, it, &x, err))
            return -1;
        const uint64_t nbytes = lc_gguf_tensor_nbytes(j->w, (int)i);
        unsigned char *buf = it->type == LC_GGML_F32 ? (unsigned char *)x : malloc(nbytes);
        if (!buf) {
            free(x);
            return lc_error_set(err, "out of memory for tensor '%s'", it->name);
        }
        if (it->type != LC_GGML_F32)
            lc_gguf_export_convert(x, (uint64_t)(it->ne[0] * it->ne[1]), it->type, buf);
        int rc = lc_gguf_write_tensor(j->w, f, buf, nbytes, err);
        if (buf != (unsigned char *)x)
            free(buf);
        free(x);
        if (rc)
            return -1;
        j->r->n_tensors++;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* output file                                                         */

/* Refuses an existing out (unless force), a directory, and a file of the
 * inputs. */
static int check_out(const lc_gguf_export_opts *o, lc_error *err)
{
    struct stat st;
    if (lstat(o->out_path, &st) != 0)
        return 0;
    if (!o->force)
        return lc_error_set(err, "%s already exists: choose another --out, or pass --force to "
                            "replace it", o->out_path);
    if (S_ISDIR(st.st_mode))
        return lc_error_set(err, "%s is a directory: --out names the .gguf file to write",
                            o->out_path);
    const char *inputs[2] = {o->base_dir, o->adapter_dir};
    for (int k = 0; k < 2; k++)
        if (inputs[k] && lc_path_contains(inputs[k], o->out_path))
            return lc_error_set(err, "%s is inside the input directory %s: export-gguf never "
                                "replaces an input; choose another --out", o->out_path,
                                inputs[k]);
    return 0;
}

static int write_file(job *j, lc_error *err)
{
    const char *out = j->o->out_path;
    size_t n = strlen(out);
    char *tmp = malloc(n + 32);
    if (!tmp)
        return lc_error_set(err, "out of memory");
    snprintf(tmp, n + 32, "%s.lorac-partial-XXXXXX", out);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        lc_error_set(err, "--out: cannot create %s: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    fchmod(fd, 0644);
    FILE *f = fdopen(fd, "wb");
    int rc = -1;
    if (!f) {
        close(fd);
        lc_error_set(err, "--out: %s", strerror(errno));
    } else if (lc_gguf_write_header(j->w, f, err) == 0 && write_tensors(j, f, err) == 0) {
        if (fflush(f) != 0 || fsync(fileno(f)) != 0)
            lc_error_set(err, "writing %s failed: %s (disk full?)", tmp, strerror(errno));
        else
            rc = 0;
    }
    if (f) {
        long size = ftell(f);
        j->r->bytes = (double)size;
        if (fclose(f) != 0 && rc == 0)
            rc = lc_error_set(err, "writing %s failed: %s", tmp, strerror(errno));
    }
    if (rc == 0 && rename(tmp, out) != 0)
        rc = lc_error_set(err, "renaming %s to %s failed: %s", tmp, out, strerror(errno));
    if (rc != 0) {
        unlink(tmp);
        size_t m = strlen(err->msg);
        snprintf(err->msg + m, sizeof err->msg - m, "; nothing was written to %s", out);
    }
    free(tmp);
    return rc;
}

/* ------------------------------------------------------------------ */

int lc_gguf_export(const lc_gguf_export_opts *o, lc_gguf_export_report *r, FILE *log,
                   lc_error *err)
{
    memset(r, 0, sizeof *r);
    const double t0 = lc_now_s();
    job j;
    memset(&j, 0, sizeof j);
    j.o = o;
    j.r = r;
    j.log = log;
    if (o->type != LC_GGML_F32 && o->type != LC_GGML_F16 && o->type != LC_GGML_BF16 &&
        o->type != LC_GGML_Q8_0)
        return lc_error_set(err, "--type: expected f32, f16, bf16 or q8_0");
    if (o->lora && !o->adapter_dir)
        return lc_error_set(err, "--lora needs --adapter");
    if (!o->lora && lc_gguf_model_is_gguf(o->base_dir))
        return lc_error_set(err, "--base %s is a GGUF file: export-gguf writes a model from a "
                            "Hugging Face directory; over a GGUF base it writes the adapter "
                            "alone (--adapter DIR --lora)", o->base_dir);
    if (check_out(o, err))
        return -1;
    /* a GGUF base: architecture, head counts and layers from its metadata */
    if (lc_model_config_load(&j.cfg, o->base_dir, err))
        return lc_error_prefix(err, "base model");
    if (j.cfg.prequantized_bnb4)
        return lc_error_set(err, "%s is a bitsandbytes 4-bit model: export-gguf needs float "
                            "weights; run `lorac merge --dequantize --dtype f32` first",
                            o->base_dir);
    if (!lc_family_of(j.cfg.arch)->gguf)
        return lc_error_set(err, "%s: export-gguf does not support %s models yet (it writes "
                            "llama, mistral, qwen2 and qwen3)", o->base_dir, j.cfg.model_type);
    j.llama = j.cfg.arch == LC_ARCH_LLAMA || j.cfg.arch == LC_ARCH_MISTRAL;
    snprintf(r->arch, sizeof r->arch, "%s",
             j.llama ? "llama" : j.cfg.arch == LC_ARCH_QWEN2 ? "qwen2" : "qwen3");
    int rc = -1;
    if (o->adapter_dir) {
        if (lc_merge_load_adapter(&j.cfg, o->base_dir, o->adapter_dir, &j.lora, &j.scale, err))
            goto out;
        j.lora_loaded = true;
        if (o->lora && j.lora.cfg.use_dora) { /* llama.cpp's LoRA GGUF has no magnitudes */
            lc_error_set(err, "%s/adapter_config.json: use_dora: a DoRA adapter cannot be "
                         "exported with --lora (llama.cpp has no DoRA); export the merged model "
                         "instead (without --lora)", o->adapter_dir);
            goto out;
        }
    }
    if (!(j.w = lc_gguf_writer_new(32))) {
        lc_error_set(err, "out of memory");
        goto out;
    }
    if (o->lora) {
        if (plan_lora(&j, err))
            goto out;
        add_lora_meta(&j);
    } else {
        if (lc_model_files_open(&j.mf, o->base_dir, err)) {
            lc_error_prefix(err, "base model");
            goto out;
        }
        j.mf_open = true;
        if (plan_model(&j, err))
            goto out;
        add_model_meta(&j);
        if (!o->no_vocab && lc_gguf_vocab_add(j.w, o->base_dir, &j.cfg, err))
            goto out;
    }
    for (size_t i = 0; i < j.n_items; i++)
        if (lc_gguf_add_tensor(j.w, j.items[i].name, j.items[i].n_dims, j.items[i].ne,
                               j.items[i].type, err) < 0)
            goto out;
    if (write_file(&j, err))
        goto out;
    rc = 0;
out:
    r->seconds = lc_now_s() - t0;
    r->peak_rss = lc_peak_rss_bytes();
    lc_gguf_writer_free(j.w);
    free(j.items);
    if (j.mf_open)
        lc_model_files_close(&j.mf);
    if (j.lora_loaded)
        lc_lora_free(&j.lora);
    return rc;
}
