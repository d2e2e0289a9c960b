// Compiled into libllama by build_hooks.cmake: an eval callback for gemserve's embedding
// contexts (gemserve/engine/llama/embedding.py).
//
// With embeddings on, llama.cpp makes every token an output, so a decoder's graph runs its
// LM head (n_embd x n_vocab) over every token and copies the logits out, although an
// embedding context only reads the node llama.cpp takes its embeddings from: with pooling
// off, the final norm's output, named "result_embd_pooled"; the head comes after it. Given
// user data pointing at two ints {stop, stops}, a non-zero `stop` makes this callback ask
// ggml's scheduler for that node and end the graph once it is computed (counting each time
// in `stops`), so the head never runs. With `stop` zero it asks for nothing and the graph
// runs whole: gemserve compares both on one context before it trusts the short one.
#include <stdbool.h>
#include <string.h>

#include "ggml.h"

#if defined(_WIN32)
#    define GEMSERVE_EXPORT __declspec(dllexport)
#else
#    define GEMSERVE_EXPORT __attribute__((visibility("default")))
#endif

GEMSERVE_EXPORT bool gemserve_embedding_eval(struct ggml_tensor * t, bool ask, void * user_data) {
    int * state = (int *) user_data;
    if (state == NULL || state[0] == 0) {
        return false;
    }
    if (ask) {
        return strcmp(ggml_get_name(t), "result_embd_pooled") == 0;
    }
    state[1] += 1;
    return false;  // the embeddings are computed: returning false ends the graph here
}
