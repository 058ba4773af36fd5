// The token ids llama.cpp gives a text: the peer of tests/python/test_tokenizer_agreement.py,
// built by scripts/llama-tokenize.sh against libllama alone (llama.cpp's `llama-tokenize` tool
// needs its `common` library too, which took most of the build).
//
//   llama-tokenize-ids MODEL.gguf < text        prints [id, id, …] on one line
//
// It tokenizes as `llama-tokenize -m MODEL --stdin --no-escape --ids` does: the vocabulary only
// (no weights), the text byte for byte (no escape processing), special tokens parsed, and the
// BOS (and EOS) the vocabulary asks for added.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "llama.h"

static void quiet(enum ggml_log_level, const char*, void*) {}

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s MODEL.gguf < text\n", argv[0]);
        return 2;
    }
    llama_log_set(quiet, nullptr);
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    llama_model* model = llama_model_load_from_file(argv[1], mp);
    if (model == nullptr) {
        std::fprintf(stderr, "error: could not load the vocabulary of %s\n", argv[1]);
        return 1;
    }
    const llama_vocab* vocab = llama_model_get_vocab(model);
    std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    if (std::cin.bad()) {
        std::fprintf(stderr, "error: could not read the standard input\n");
        return 1;
    }
    const bool add_special = llama_vocab_get_add_bos(vocab);
    std::vector<llama_token> ids(text.size() + 2);
    int32_t n = llama_tokenize(vocab, text.data(), (int32_t)text.size(), ids.data(), (int32_t)ids.size(),
                               add_special, /*parse_special=*/true);
    if (n < 0) {
        ids.resize((size_t)-n);
        n = llama_tokenize(vocab, text.data(), (int32_t)text.size(), ids.data(), (int32_t)ids.size(), add_special,
                           true);
    }
    if (n < 0) {
        std::fprintf(stderr, "error: tokenization failed (%d)\n", n);
        return 1;
    }
    std::printf("[");
    for (int32_t i = 0; i < n; i++) std::printf(i ? ", %d" : "%d", ids[i]);
    std::printf("]\n");
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
