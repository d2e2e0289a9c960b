// Compiled into libllama by build_hooks.cmake: an eval callback for gemserve's embedding
// contexts (gemserve/engine/llama/embedding.py).
//
// With embeddings on, llama.cpp makes every token an output, so a decoder's graph runs its
// LM head (n_embd x n_vocab: a fifth of SmolLM2-135M's work per token) over every token and
// copies the logits out, although an embedding context only reads "result_norm", the final
// norm just before the head. Given a pointer to a non-zero int as user data, this callback
// asks ggml's scheduler for that node and stops the graph once it is computed; the head is
// never run. With zero (or no user data) it asks for nothing and the graph runs whole, so
// gemserve can compare both on one context before it trusts the short one for a model.
#include <stdbool.h>
#include <string.h>

#include "ggml.h"

#if defined(_WIN32)
#    define GEMSERVE_EXPORT __declspec(dllexport)
#else
#    define GEMSERVE_EXPORT __attribute__((visibility("default")))
#endif

GEMSERVE_EXPORT bool gemserve_embedding_eval(struct ggml_tensor * t, bool ask, void * user_data) {
    const int * stop = (const int *) user_data;
    if (stop == NULL || *stop == 0) {
        return false;
    }
    if (ask) {
        return strcmp(ggml_get_name(t), "result_norm") == 0;
    }
    return false;  // the final norm is computed: returning false ends the graph here
}
