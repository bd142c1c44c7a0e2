/* chat_cmd.c — `lorac chat`: options, usage and exit status around the REPL
 * (chat_repl.c) and a backend opened through lc_chat_backend_ops. See
 * chat_cmd.h. Option syntax as the other commands: "--x V" or "--x=V". */
#include "train/chat_cmd.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/cli_opt.h"

void lc_chat_usage(FILE *f)
{
    fprintf(f,
        "usage: lorac chat --model DIR [--adapter DIR] [--system TEXT] [--max-new-tokens N]\n"
        "                  [--temperature T] [--top-p P] [--top-k K] [--seed S]\n"
        "  Talks with the model in DIR (plus a PEFT adapter), its chat template applied to\n"
        "  the whole conversation at each turn; replies are streamed as they are generated.\n"
        "  On a terminal: a prompt '> '; a line ending in '\\' continues the message;\n"
        "  Ctrl-C stops an answer (the partial answer stays in the conversation, marked\n"
        "  interrupted) or, at the prompt, drops the line; Ctrl-D or /bye ends the session.\n"
        "  /help lists the commands: /reset, /system TEXT, /bye, //TEXT.\n"
        "  Not on a terminal (echo hi | lorac chat ...): each input line is a message and\n"
        "  only the replies are printed, one after another, each followed by a newline.\n"
        "  --model DIR           Hugging Face model directory (tokenizer and chat template),\n"
        "                        or a GGUF file (the files next to it, else its own)\n"
        "  --adapter DIR         PEFT adapter directory (optional)\n"
        "  --system TEXT         system prompt (default: none)\n"
        "  --max-new-tokens N    longest reply, in tokens\n"
        "  --temperature T       sampling temperature, >= 0 (0: greedy)\n"
        "  --top-p P             nucleus sampling, in (0, 1]\n"
        "  --top-k K             sample among the K most likely tokens (0: all)\n"
        "  --seed S              random seed, for reproducible replies\n"
        "  Sampling options not given take the model's generation_config.json values.\n"
        "  Exit status: 0 the session ended, 1 failed (off a terminal, also a reply that\n"
        "  failed), 2 bad usage.\n");
}


static bool parse_int(const char *flag, const char *v, int64_t lo, int64_t hi, int64_t *out,
                      FILE *err_out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(err_out, "lorac chat: %s: expected an integer from %lld to %lld, got '%s'\n",
                flag, (long long)lo, (long long)hi, v);
        return false;
    }
    *out = x;
    return true;
}

/* A finite number in [lo, hi] (lo excluded when open_lo). */
static bool parse_real(const char *flag, const char *v, double lo, bool open_lo, double hi,
                       double *out, FILE *err_out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x) || x < lo || (open_lo && x == lo) || x > hi) {
        fprintf(err_out, "lorac chat: %s: expected a number %s %g and <= %g, got '%s'\n", flag,
                open_lo ? ">" : ">=", lo, hi, v);
        return false;
    }
    *out = x;
    return true;
}

static bool parse_seed(const char *v, uint64_t *out, FILE *err_out)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-' || v[0] == '+' || v[0] == ' ') {
        fprintf(err_out, "lorac chat: --seed: expected an integer from 0 to %" PRIu64
                ", got '%s'\n", UINT64_MAX, v);
        return false;
    }
    *out = x;
    return true;
}

int lc_chat_parse_args(int argc, char **argv, lc_chat_opts *o, FILE *err_out)
{
    *o = (lc_chat_opts){.max_new_tokens = -1, .temperature = -1, .top_p = -1, .top_k = -1};
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
    for (int i = 0; i < argc; i++) {
        const char *v = NULL;
        const char *arg = argv[i];
        int k;
        bool ok = true;
        if ((k = lc_cli_opt_value(argc, argv, &i, "--model", &v)) > 0)
            o->model_dir = v;
        else if (k == 0 && (k = lc_cli_opt_value(argc, argv, &i, "--adapter", &v)) > 0)
            o->adapter_dir = v;
        else if (k == 0 && (k = lc_cli_opt_value(argc, argv, &i, "--system", &v)) > 0)
            o->system_prompt = v;
        else if (k == 0 && (k = lc_cli_opt_value(argc, argv, &i, "--max-new-tokens", &v)) > 0)
            ok = parse_int("--max-new-tokens", v, 1, 1 << 20, &o->max_new_tokens, err_out);
        else if (k == 0 && (k = lc_cli_opt_value(argc, argv, &i, "--temperature", &v)) > 0)
            ok = parse_real("--temperature", v, 0, false, 100, &o->temperature, err_out);
        else if (k == 0 && (k = lc_cli_opt_value(argc, argv, &i, "--top-p", &v)) > 0)
            ok = parse_real("--top-p", v, 0, true, 1, &o->top_p, err_out);
        else if (k == 0 && (k = lc_cli_opt_value(argc, argv, &i, "--top-k", &v)) > 0)
            ok = parse_int("--top-k", v, 0, 1 << 24, &o->top_k, err_out);
        else if (k == 0 && (k = lc_cli_opt_value(argc, argv, &i, "--seed", &v)) > 0)
            ok = o->has_seed = parse_seed(v, &o->seed, err_out);
        if (k < 0) {
            fprintf(err_out, "lorac chat: %s needs a value\n", arg);
            return 2;
        }
        if (k == 0) {
            fprintf(err_out, "lorac chat: unexpected argument '%s'\n", arg);
            lc_chat_usage(err_out);
            return 2;
        }
        if (!ok)
            return 2;
    }
    if (!o->model_dir) {
        fprintf(err_out, "lorac chat: missing --model DIR\n");
        lc_chat_usage(err_out);
        return 2;
    }
    return 0;
}

int lc_chat_command(int argc, char **argv, const lc_chat_backend_ops *ops, FILE *in,
                    FILE *out, FILE *err_out)
{
    lc_chat_opts o;
    int rc = lc_chat_parse_args(argc, argv, &o, err_out);
    if (rc == 1) {
        lc_chat_usage(out);
        return 0;
    }
    if (rc)
        return rc;
    lc_error err = {{0}};
    lc_chat_backend b = {0};
    if (ops->open(&o, &b, err_out, &err)) {
        fprintf(err_out, "lorac chat: %s\n", err.msg);
        return 1;
    }
    rc = lc_chat_repl(&b, in, out, err_out, o.system_prompt, &err);
    ops->close(&b);
    if (rc) {
        fflush(out);
        fprintf(err_out, "lorac chat: %s\n", err.msg);
        return 1;
    }
    return 0;
}

int lc_chat_main(int argc, char **argv, const lc_chat_backend_ops *ops)
{
    return lc_chat_command(argc, argv, ops, stdin, stdout, stderr);
}
