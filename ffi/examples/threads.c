/* One model, several sessions generating at once on several threads.
 *
 *   gcc -Wall -Wextra -Werror -pthread threads.c -I<prefix>/include -L<prefix>/lib -lautark -o threads
 *   ./threads model.autark [N_TOKENS]
 *
 * Each thread generates greedily from its own prompt; the program checks that every thread's
 * text equals the text the same prompt gives on the main thread alone.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autark.h"

#define N_THREADS 3

static unsigned n_tokens = 16;

typedef struct {
    const autark_model *model;
    const char *prompt;
    char text[4096];
    size_t len;
    autark_status status;
} job;

static bool collect(const char *piece, size_t len, void *user_data) {
    job *j = user_data;
    if (j->len + len + 1 > sizeof j->text) return false;
    memcpy(j->text + j->len, piece, len);
    j->len += len;
    j->text[j->len] = 0;
    return true;
}

static void *run(void *arg) {
    job *j = arg;
    autark_session_params sp = autark_session_params_default();
    sp.temperature = 0.0f;
    sp.n_ctx = 256;
    sp.n_threads = 1;
    autark_session *s = NULL;
    j->status = autark_session_new(j->model, &sp, &s);
    if (j->status == AUTARK_OK) j->status = autark_generate(s, j->prompt, n_tokens, collect, j);
    if (j->status != AUTARK_OK) fprintf(stderr, "thread error: %s\n", autark_last_error());
    autark_session_free(s);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [N_TOKENS]\n", argv[0]);
        return 2;
    }
    if (argc > 2) n_tokens = (unsigned)atoi(argv[2]);
    const char *prompts[N_THREADS] = {"The capital of France is", "Once upon a time", "def fibonacci(n):"};
    autark_model *model = NULL;
    if (autark_model_load(argv[1], NULL, &model) != AUTARK_OK) {
        fprintf(stderr, "load failed: %s\n", autark_last_error());
        return 1;
    }
    job solo[N_THREADS], par[N_THREADS];
    memset(solo, 0, sizeof solo);
    memset(par, 0, sizeof par);
    for (int i = 0; i < N_THREADS; i++) {
        solo[i].model = par[i].model = model;
        solo[i].prompt = par[i].prompt = prompts[i];
        run(&solo[i]);
    }
    pthread_t t[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) pthread_create(&t[i], NULL, run, &par[i]);
    for (int i = 0; i < N_THREADS; i++) pthread_join(t[i], NULL);
    int bad = 0;
    for (int i = 0; i < N_THREADS; i++) {
        int same = solo[i].status == AUTARK_OK && par[i].status == AUTARK_OK && strcmp(solo[i].text, par[i].text) == 0;
        printf("[%d] %s%s -> %s\n", i, prompts[i], par[i].text, same ? "same as alone" : "DIFFERENT");
        bad |= !same;
    }
    autark_model_free(model);
    return bad;
}
