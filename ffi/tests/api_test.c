/* Misuse and contract tests of the C API, run by ffi/tests/c_api.rs (also under valgrind).
 * Usage: api_test MODEL.autark CORRUPT.autark */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autark.h"

static int failures = 0;
#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, \
                    __LINE__, #cond, autark_last_error());                       \
            failures++;                                                          \
        }                                                                        \
    } while (0)

/* Cancels its session's generation from inside the stream (the token is thread-safe; a real
 * program would call autark_cancel from another thread). */
static int pieces = 0;
static bool cancel_after_first(const char *piece, size_t len, void *user_data) {
    (void)piece;
    (void)len;
    pieces++;
    autark_cancel((const autark_cancel_token *)user_data);
    return true;
}

/* Appends each piece to a buffer (user_data: struct text). */
struct text {
    char buf[8192];
    size_t len;
};
static bool collect(const char *piece, size_t len, void *user_data) {
    struct text *t = (struct text *)user_data;
    if (t->len + len < sizeof t->buf) {
        memcpy(t->buf + t->len, piece, len);
        t->len += len;
        t->buf[t->len] = 0;
    }
    return true;
}

/* Greedy text of `prompt` with speculative mode `mode` (and `m` as its own draft model for
 * AUTARK_SPEC_DRAFT); the drafted and accepted counts into `stats`. */
static void spec_text(autark_model *m, int mode, const char *prompt, struct text *out, uint64_t stats[2]) {
    autark_session_params p = autark_session_params_default();
    p.n_ctx = 256;
    p.temperature = 0;
    p.speculative = mode;
    p.draft_max = 8;
    p.draft_min = 2; /* draft at every match, whatever the timings (valgrind's) say */
    autark_session *s = NULL;
    out->len = 0;
    out->buf[0] = 0;
    CHECK(autark_session_new(m, &p, &s) == AUTARK_OK);
    if (mode == AUTARK_SPEC_DRAFT) CHECK(autark_session_set_draft(s, m) == AUTARK_OK);
    /* AUTARK_TEST_SPEC_TOKENS shortens the texts under valgrind (a second per token there). */
    const char *n = getenv("AUTARK_TEST_SPEC_TOKENS");
    CHECK(autark_generate(s, prompt, n ? atoi(n) : 48, collect, out) == AUTARK_OK);
    CHECK(autark_session_draft_stats(s, &stats[0], &stats[1]) == AUTARK_OK);
    autark_session_free(s);
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    CHECK(autark_abi_version() == AUTARK_ABI_VERSION);
    CHECK(strlen(autark_version()) > 0);

    /* ---- loading ---- */
    autark_model *m = (autark_model *)0x1;
    CHECK(autark_model_load(NULL, NULL, &m) == AUTARK_ERR_NULL_POINTER);
    CHECK(m == NULL);
    CHECK(autark_model_load(argv[1], NULL, NULL) == AUTARK_ERR_NULL_POINTER);
    CHECK(autark_model_load("/no/such/file.autark", NULL, &m) == AUTARK_ERR_IO);
    CHECK(strstr(autark_last_error(), "file.autark") != NULL);
    CHECK(autark_model_load("\xff\xfe", NULL, &m) == AUTARK_ERR_INVALID_UTF8);
    CHECK(autark_model_load(argv[2], NULL, &m) == AUTARK_ERR_CORRUPT_MODEL && m == NULL);
    autark_model_params mp = autark_model_params_default();
    mp.verify_checksums = true;
    CHECK(autark_model_load(argv[1], &mp, &m) == AUTARK_OK && m != NULL);
    CHECK(strcmp(autark_last_error(), "") == 0);
    size_t n_vocab = 0;
    CHECK(autark_model_n_vocab(m, &n_vocab) == AUTARK_OK && n_vocab > 0);

    /* ---- the conformance record: this machine's kernels reproduce it bit for bit ---- */
    CHECK(autark_model_verify_conformance(NULL, 1) == AUTARK_ERR_NULL_POINTER);
    if (!getenv("AUTARK_TEST_SKIP_PROBE")) CHECK(autark_model_verify_conformance(m, 1) == AUTARK_OK);

    /* ---- tokenize: size query, too-small buffer, exact buffer ---- */
    size_t n = 99;
    CHECK(autark_tokenize(m, "Hello world", false, NULL, 0, &n) == AUTARK_ERR_BUFFER_TOO_SMALL && n > 0);
    size_t need = n;
    int32_t small[1];
    if (need > 1) CHECK(autark_tokenize(m, "Hello world", false, small, 1, &n) == AUTARK_ERR_BUFFER_TOO_SMALL && n == need);
    int32_t *toks = malloc(need * sizeof *toks);
    CHECK(autark_tokenize(m, "Hello world", false, toks, need, &n) == AUTARK_OK && n == need);
    CHECK(autark_tokenize(m, "\xc3\x28", false, toks, need, &n) == AUTARK_ERR_INVALID_UTF8);
    CHECK(autark_tokenize(m, NULL, false, toks, need, &n) == AUTARK_ERR_NULL_POINTER);

    /* ---- token_to_piece ---- */
    char piece[64];
    size_t len = 0;
    CHECK(autark_token_to_piece(m, toks[0], piece, sizeof piece, &len) == AUTARK_OK && strlen(piece) == len);
    CHECK(autark_token_to_piece(m, toks[0], piece, 0, &len) == AUTARK_ERR_BUFFER_TOO_SMALL && len > 0);
    CHECK(autark_token_to_piece(m, -1, piece, sizeof piece, &len) == AUTARK_ERR_INVALID_TOKEN);
    CHECK(autark_token_to_piece(m, (int32_t)n_vocab, piece, sizeof piece, &len) == AUTARK_ERR_INVALID_TOKEN);

    /* ---- chat template ---- */
    const char *roles[] = {"user"};
    const char *contents[] = {"Hi"};
    CHECK(autark_chat_apply_template(m, roles, contents, 1, true, NULL, 0, &len) == AUTARK_ERR_BUFFER_TOO_SMALL && len > 0);
    char *chat = malloc(len + 1);
    CHECK(autark_chat_apply_template(m, roles, contents, 1, true, chat, len + 1, &len) == AUTARK_OK);
    CHECK(strstr(chat, "Hi") != NULL);
    free(chat);
    CHECK(autark_chat_apply_template(m, NULL, contents, 1, true, piece, sizeof piece, &len) == AUTARK_ERR_NULL_POINTER);

    /* ---- sessions ---- */
    autark_session *s = (autark_session *)0x1;
    CHECK(autark_session_new(NULL, NULL, &s) == AUTARK_ERR_NULL_POINTER && s == NULL);
    autark_session_params sp = autark_session_params_default();
    sp.top_p = 0.0f;
    CHECK(autark_session_new(m, &sp, &s) == AUTARK_ERR_INVALID_ARGUMENT && s == NULL);
    sp = autark_session_params_default();
    sp.n_ctx = 16;
    sp.temperature = 0.0f;
    CHECK(autark_session_new(m, &sp, &s) == AUTARK_OK && s != NULL);
    const float *logits = (const float *)0x1;
    size_t nv = 7;
    CHECK(autark_session_logits(s, &logits, &nv) == AUTARK_ERR_NO_LOGITS && logits == NULL && nv == 0);
    int32_t tok = 0;
    CHECK(autark_session_sample(s, &tok) == AUTARK_ERR_NO_LOGITS);
    CHECK(autark_session_eval(s, toks, 0) == AUTARK_ERR_INVALID_ARGUMENT);
    CHECK(autark_session_eval(s, NULL, 3) == AUTARK_ERR_NULL_POINTER);
    int32_t bad_tok = (int32_t)n_vocab;
    CHECK(autark_session_eval(s, &bad_tok, 1) == AUTARK_ERR_INVALID_TOKEN);
    CHECK(autark_session_eval(s, toks, need) == AUTARK_OK);
    CHECK(autark_session_logits(s, &logits, &nv) == AUTARK_OK && nv == n_vocab && logits != NULL);
    CHECK(autark_session_sample(s, &tok) == AUTARK_OK && tok >= 0 && (size_t)tok < n_vocab);
    /* greedy sample = argmax of the logits */
    size_t best = 0;
    for (size_t i = 1; i < nv; i++) if (logits[i] > logits[best]) best = i;
    CHECK((size_t)tok == best);
    /* context overflow: 16 tokens of context */
    int32_t many[32];
    for (int i = 0; i < 32; i++) many[i] = toks[0];
    size_t before = 0, after = 0;
    CHECK(autark_session_n_tokens(s, &before) == AUTARK_OK);
    CHECK(autark_session_eval(s, many, 32) == AUTARK_ERR_CONTEXT_OVERFLOW);
    CHECK(autark_session_n_tokens(s, &after) == AUTARK_OK && after == before);
    /* reset and reuse */
    CHECK(autark_session_reset(s) == AUTARK_OK);
    CHECK(autark_session_n_tokens(s, &after) == AUTARK_OK && after == 0);
    CHECK(autark_session_logits(s, &logits, &nv) == AUTARK_ERR_NO_LOGITS);
    CHECK(autark_generate(s, "Hello", 4, NULL, NULL) == AUTARK_OK);
    CHECK(autark_generate(s, NULL, 4, NULL, NULL) == AUTARK_ERR_NULL_POINTER);
    CHECK(autark_session_reset(NULL) == AUTARK_ERR_NULL_POINTER);

    /* memory: the exact size is reported, and a budget below it is refused */
    uint64_t bytes = 0;
    CHECK(autark_session_memory_bytes(s, &bytes) == AUTARK_OK && bytes > 0);
    autark_session_params tight = sp;
    tight.max_memory_bytes = bytes - 1;
    autark_session *s3 = (autark_session *)0x1;
    CHECK(autark_session_new(m, &tight, &s3) == AUTARK_ERR_OUT_OF_MEMORY && s3 == NULL);
    tight.max_memory_bytes = bytes;
    CHECK(autark_session_new(m, &tight, &s3) == AUTARK_OK);
    autark_session_free(s3);

    /* cancellation */
    autark_cancel_token *tok_c = NULL;
    CHECK(autark_session_cancel_token(s, &tok_c) == AUTARK_OK && tok_c != NULL);
    CHECK(autark_session_reset(s) == AUTARK_OK);
    CHECK(autark_generate(s, "Once upon a time", 12, cancel_after_first, tok_c) == AUTARK_OK);
    CHECK(pieces >= 1 && pieces < 12);
    CHECK(autark_cancel(NULL) == AUTARK_ERR_NULL_POINTER);
    autark_cancel_token_free(tok_c);
    autark_cancel_token_free(NULL);

    /* session states: NULLs, a missing file, a file that is not a state, bad cache types */
    autark_session *s4 = (autark_session *)0x1;
    CHECK(autark_session_save(NULL, "x.state") == AUTARK_ERR_NULL_POINTER);
    CHECK(autark_session_save(s, NULL) == AUTARK_ERR_NULL_POINTER);
    CHECK(autark_session_save(s, "/no/such/dir/x.state") == AUTARK_ERR_IO);
    CHECK(autark_session_load(NULL, argv[1], NULL, &s4) == AUTARK_ERR_NULL_POINTER && s4 == NULL);
    CHECK(autark_session_load(m, NULL, NULL, &s4) == AUTARK_ERR_NULL_POINTER);
    CHECK(autark_session_load(m, argv[1], NULL, NULL) == AUTARK_ERR_NULL_POINTER);
    CHECK(autark_session_load(m, "/no/such/file.state", NULL, &s4) == AUTARK_ERR_IO && s4 == NULL);
    CHECK(autark_session_load(m, argv[1], NULL, &s4) == AUTARK_ERR_CORRUPT_STATE && s4 == NULL);
    CHECK(autark_generate_continue(NULL, 4, NULL, NULL) == AUTARK_ERR_NULL_POINTER);
    autark_session_params bad_cache = sp;
    bad_cache.cache_type_k = 7;
    CHECK(autark_session_new(m, &bad_cache, &s4) == AUTARK_ERR_INVALID_ARGUMENT && s4 == NULL);
    bad_cache.cache_type_k = -1;
    CHECK(autark_session_new(m, &bad_cache, &s4) == AUTARK_ERR_INVALID_ARGUMENT && s4 == NULL);
    /* an empty session saved and loaded: still empty, nothing to continue */
    CHECK(autark_session_reset(s) == AUTARK_OK);
    CHECK(autark_session_save(s, "api_test_empty.state") == AUTARK_OK);
    CHECK(autark_session_load(m, "api_test_empty.state", NULL, &s4) == AUTARK_OK && s4 != NULL);
    CHECK(autark_session_n_tokens(s4, &after) == AUTARK_OK && after == 0);
    CHECK(autark_generate_continue(s4, 4, NULL, NULL) == AUTARK_ERR_INVALID_ARGUMENT);
    autark_session_free(s4);
    remove("api_test_empty.state");

    /* speculative decoding: the same text as plain decoding, with drafts made and accepted */
    {
        static struct text plain, look, draft;
        uint64_t st[2] = {9, 9};
        const char *prompt = "Repeat after me: red green blue, red green blue, red green blue, red green blue";
        spec_text(m, AUTARK_SPEC_OFF, prompt, &plain, st);
        CHECK(st[0] == 0 && st[1] == 0 && plain.len > 0);
        spec_text(m, AUTARK_SPEC_LOOKUP, prompt, &look, st);
        CHECK(strcmp(plain.buf, look.buf) == 0);
        CHECK(st[0] > 0 && st[1] > 0 && st[1] <= st[0]);
        spec_text(m, AUTARK_SPEC_DRAFT, prompt, &draft, st);
        CHECK(strcmp(plain.buf, draft.buf) == 0);
        CHECK(st[0] > 0 && st[1] == st[0]); /* a model is its own perfect draft */
        autark_session_params bad = autark_session_params_default();
        autark_session *s5 = NULL;
        bad.speculative = 3;
        CHECK(autark_session_new(m, &bad, &s5) == AUTARK_ERR_INVALID_ARGUMENT && s5 == NULL);
        bad.speculative = AUTARK_SPEC_LOOKUP;
        bad.draft_max = 0;
        CHECK(autark_session_new(m, &bad, &s5) == AUTARK_ERR_INVALID_ARGUMENT && s5 == NULL);
        bad.draft_max = 4;
        bad.draft_min = 5; /* more than draft_max */
        CHECK(autark_session_new(m, &bad, &s5) == AUTARK_ERR_INVALID_ARGUMENT && s5 == NULL);
        bad.draft_min = 4;
        bad.speculative = AUTARK_SPEC_DRAFT;
        CHECK(autark_session_new(m, &bad, &s5) == AUTARK_OK);
        /* draft mode without a draft model: refused when generating */
        CHECK(autark_generate(s5, "Hi", 2, NULL, NULL) == AUTARK_ERR_INVALID_ARGUMENT);
        CHECK(autark_session_set_draft(NULL, m) == AUTARK_ERR_NULL_POINTER);
        CHECK(autark_session_set_draft(s5, m) == AUTARK_OK);
        CHECK(autark_session_set_draft(s5, NULL) == AUTARK_OK);
        CHECK(autark_session_draft_stats(s5, NULL, &st[1]) == AUTARK_ERR_NULL_POINTER);
        CHECK(autark_session_draft_stats(NULL, &st[0], &st[1]) == AUTARK_ERR_NULL_POINTER);
        autark_session_free(s5);
    }

    /* a second model and session, freed in the other order: sessions keep their model alive */
    autark_model *m2 = NULL;
    autark_session *s2 = NULL;
    CHECK(autark_model_load(argv[1], NULL, &m2) == AUTARK_OK);
    CHECK(autark_session_new(m2, NULL, &s2) == AUTARK_OK);
    autark_model_free(m2);
    CHECK(autark_generate(s2, "Hi", 2, NULL, NULL) == AUTARK_OK);
    autark_session_free(s2);

    autark_session_free(s);
    autark_session_free(NULL);
    autark_model_free(m);
    autark_model_free(NULL);
    free(toks);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("api_test: all checks passed\n");
    return 0;
}
