/* C side of the Go bindings: static inline wrappers that every cgo file of package dsa includes.
 *
 * Two cgo rules shape them:
 * - A goroutine can move to another OS thread between two cgo calls, so libdsa's thread-local
 *   error message must be read inside the call that failed: each fallible call is wrapped, and
 *   on failure the wrapper returns a malloc'd copy of the message (Go frees it).
 * - Go may not pass C a pointer to Go memory that itself holds a Go pointer, so a tensor travels
 *   as its layout (whose data is NULL or a device address) plus its Go data pointer, joined here.
 *
 * Adding an op: one wrapper that joins each tensor with DSA_GO_TENSOR and passes the status
 * through dsa_go_checked, as dsa_go_hadamard does. */
#ifndef DSA_GO_H
#define DSA_GO_H

#include <dsa.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline dsa_status_t dsa_go_checked(dsa_status_t status, char** message) {
    if (status != DSA_STATUS_SUCCESS) *message = strdup(dsa_last_error_message());
    return status;
}

/* The tensor to pass to libdsa: NULL stays NULL (libdsa reports it), a non-NULL data pointer
 * replaces the layout's. */
static inline const dsa_tensor_t* dsa_go_tensor(const dsa_tensor_t* layout, void* data, dsa_tensor_t* storage) {
    if (layout == NULL) return NULL;
    *storage = *layout;
    if (data != NULL) storage->data = data;
    return storage;
}
#define DSA_GO_TENSOR(name) dsa_go_tensor(name, name##_data, &name##_storage)

/* Describes a tensor at `address` (device memory), or with go_memory set, one whose Go data
 * pointer is joined at call time: libdsa refuses NULL data for a tensor with elements, so a
 * placeholder stands in during the checks and is cleared afterwards. */
static inline dsa_status_t dsa_go_tensor_init(dsa_tensor_t* tensor, int go_memory, uintptr_t address, int32_t ndim,
                                              const int64_t* shape, dsa_dtype_t dtype,
                                              dsa_device_type_t device_type, int32_t device_id, char** message) {
    static char placeholder;
    void* data = go_memory ? (void*)&placeholder : (void*)address;
    dsa_status_t status = dsa_tensor_init_contiguous(tensor, data, ndim, shape, dtype, device_type, device_id);
    if (status == DSA_STATUS_SUCCESS && go_memory) tensor->data = NULL;
    return dsa_go_checked(status, message);
}

static inline dsa_status_t dsa_go_context_create(dsa_context_t** context, const dsa_context_options_t* options,
                                                 char** message) {
    return dsa_go_checked(dsa_context_create(context, options), message);
}

static inline dsa_status_t dsa_go_context_device(const dsa_context_t* context, dsa_device_type_t* device_type,
                                                 int32_t* device_id, char** message) {
    return dsa_go_checked(dsa_context_device(context, device_type, device_id), message);
}

static inline dsa_status_t dsa_go_context_num_threads(const dsa_context_t* context, int32_t* num_threads,
                                                      char** message) {
    return dsa_go_checked(dsa_context_num_threads(context, num_threads), message);
}

static inline dsa_status_t dsa_go_quantize_fp8(dsa_context_t* context, const dsa_quantize_fp8_params_t* params,
                                               const dsa_tensor_t* x, void* x_data, const dsa_tensor_t* q,
                                               void* q_data, const dsa_tensor_t* scales, void* scales_data,
                                               uintptr_t stream, char** message) {
    dsa_tensor_t x_storage, q_storage, scales_storage;
    return dsa_go_checked(dsa_quantize_fp8(context, params, DSA_GO_TENSOR(x), DSA_GO_TENSOR(q),
                                           DSA_GO_TENSOR(scales), (dsa_stream_t)stream), message);
}

static inline dsa_status_t dsa_go_dequantize_fp8(dsa_context_t* context, const dsa_quantize_fp8_params_t* params,
                                                 const dsa_tensor_t* q, void* q_data, const dsa_tensor_t* scales,
                                                 void* scales_data, const dsa_tensor_t* y, void* y_data,
                                                 uintptr_t stream, char** message) {
    dsa_tensor_t q_storage, scales_storage, y_storage;
    return dsa_go_checked(dsa_dequantize_fp8(context, params, DSA_GO_TENSOR(q), DSA_GO_TENSOR(scales),
                                             DSA_GO_TENSOR(y), (dsa_stream_t)stream), message);
}

static inline dsa_status_t dsa_go_hadamard(dsa_context_t* context, const dsa_hadamard_params_t* params,
                                           const dsa_tensor_t* x, void* x_data, const dsa_tensor_t* y, void* y_data,
                                           uintptr_t stream, char** message) {
    dsa_tensor_t x_storage, y_storage;
    return dsa_go_checked(dsa_hadamard(context, params, DSA_GO_TENSOR(x), DSA_GO_TENSOR(y), (dsa_stream_t)stream),
                          message);
}

static inline dsa_status_t dsa_go_hadamard_quantize_fp8(dsa_context_t* context,
                                                        const dsa_hadamard_params_t* hadamard_params,
                                                        const dsa_quantize_fp8_params_t* quantize_params,
                                                        const dsa_tensor_t* x, void* x_data, const dsa_tensor_t* q,
                                                        void* q_data, const dsa_tensor_t* scales, void* scales_data,
                                                        uintptr_t stream, char** message) {
    dsa_tensor_t x_storage, q_storage, scales_storage;
    return dsa_go_checked(dsa_hadamard_quantize_fp8(context, hadamard_params, quantize_params, DSA_GO_TENSOR(x),
                                                    DSA_GO_TENSOR(q), DSA_GO_TENSOR(scales), (dsa_stream_t)stream),
                          message);
}

static inline dsa_status_t dsa_go_topk(dsa_context_t* context, const dsa_topk_params_t* params,
                                       const dsa_tensor_t* scores, void* scores_data, const dsa_tensor_t* row_starts,
                                       void* row_starts_data, const dsa_tensor_t* row_ends, void* row_ends_data,
                                       const dsa_tensor_t* block_table, void* block_table_data,
                                       const dsa_tensor_t* indices, void* indices_data, uintptr_t stream,
                                       char** message) {
    dsa_tensor_t scores_storage, row_starts_storage, row_ends_storage, block_table_storage, indices_storage;
    return dsa_go_checked(dsa_topk(context, params, DSA_GO_TENSOR(scores), DSA_GO_TENSOR(row_starts),
                                   DSA_GO_TENSOR(row_ends), DSA_GO_TENSOR(block_table), DSA_GO_TENSOR(indices),
                                   (dsa_stream_t)stream), message);
}

static inline dsa_status_t dsa_go_indexer_logits(dsa_context_t* context, const dsa_indexer_params_t* params,
                                                 const dsa_tensor_t* q, void* q_data, const dsa_tensor_t* weights,
                                                 void* weights_data, const dsa_tensor_t* k, void* k_data,
                                                 const dsa_tensor_t* k_scale, void* k_scale_data, const dsa_tensor_t* ks,
                                                 void* ks_data, const dsa_tensor_t* ke, void* ke_data,
                                                 const dsa_tensor_t* logits, void* logits_data, uintptr_t stream,
                                                 char** message) {
    dsa_tensor_t q_storage, weights_storage, k_storage, k_scale_storage, ks_storage, ke_storage, logits_storage;
    return dsa_go_checked(dsa_indexer_logits(context, params, DSA_GO_TENSOR(q), DSA_GO_TENSOR(weights), DSA_GO_TENSOR(k),
                                             DSA_GO_TENSOR(k_scale), DSA_GO_TENSOR(ks), DSA_GO_TENSOR(ke),
                                             DSA_GO_TENSOR(logits), (dsa_stream_t)stream), message);
}

static inline dsa_status_t dsa_go_indexer_logits_paged(dsa_context_t* context, const dsa_indexer_params_t* params,
                                                       const dsa_tensor_t* q, void* q_data, const dsa_tensor_t* weights,
                                                       void* weights_data, const dsa_tensor_t* k_cache, void* k_cache_data,
                                                       const dsa_tensor_t* block_table, void* block_table_data,
                                                       const dsa_tensor_t* context_lens, void* context_lens_data,
                                                       const dsa_tensor_t* logits, void* logits_data, uintptr_t stream,
                                                       char** message) {
    dsa_tensor_t q_storage, weights_storage, k_cache_storage, block_table_storage, context_lens_storage, logits_storage;
    return dsa_go_checked(dsa_indexer_logits_paged(context, params, DSA_GO_TENSOR(q), DSA_GO_TENSOR(weights),
                                                   DSA_GO_TENSOR(k_cache), DSA_GO_TENSOR(block_table),
                                                   DSA_GO_TENSOR(context_lens), DSA_GO_TENSOR(logits),
                                                   (dsa_stream_t)stream), message);
}

static inline dsa_status_t dsa_go_indexer_cache_write(dsa_context_t* context, const dsa_tensor_t* k, void* k_data,
                                                      const dsa_tensor_t* slot_mapping, void* slot_mapping_data,
                                                      const dsa_tensor_t* k_cache, void* k_cache_data, uintptr_t stream,
                                                      char** message) {
    dsa_tensor_t k_storage, slot_mapping_storage, k_cache_storage;
    return dsa_go_checked(dsa_indexer_cache_write(context, DSA_GO_TENSOR(k), DSA_GO_TENSOR(slot_mapping),
                                                  DSA_GO_TENSOR(k_cache), (dsa_stream_t)stream), message);
}

static inline dsa_status_t dsa_go_sparse_attention(dsa_context_t* context, const dsa_sparse_attention_params_t* params,
                                                   const dsa_tensor_t* q, void* q_data, const dsa_tensor_t* kv,
                                                   void* kv_data, const dsa_tensor_t* indices, void* indices_data,
                                                   const dsa_tensor_t* attn_sink, void* attn_sink_data,
                                                   const dsa_tensor_t* topk_length, void* topk_length_data,
                                                   const dsa_tensor_t* out, void* out_data, const dsa_tensor_t* lse,
                                                   void* lse_data, const dsa_tensor_t* max_logits, void* max_logits_data,
                                                   uintptr_t stream, char** message) {
    dsa_tensor_t q_storage, kv_storage, indices_storage, attn_sink_storage, topk_length_storage, out_storage,
        lse_storage, max_logits_storage;
    return dsa_go_checked(dsa_sparse_attention(context, params, DSA_GO_TENSOR(q), DSA_GO_TENSOR(kv),
                                               DSA_GO_TENSOR(indices), DSA_GO_TENSOR(attn_sink),
                                               DSA_GO_TENSOR(topk_length), DSA_GO_TENSOR(out), DSA_GO_TENSOR(lse),
                                               DSA_GO_TENSOR(max_logits), (dsa_stream_t)stream), message);
}

static inline dsa_status_t dsa_go_sparse_attention_paged(dsa_context_t* context,
                                                         const dsa_sparse_attention_params_t* params,
                                                         const dsa_tensor_t* q, void* q_data,
                                                         const dsa_tensor_t* kv_cache, void* kv_cache_data,
                                                         const dsa_tensor_t* indices, void* indices_data,
                                                         const dsa_tensor_t* attn_sink, void* attn_sink_data,
                                                         const dsa_tensor_t* topk_length, void* topk_length_data,
                                                         const dsa_tensor_t* out, void* out_data, const dsa_tensor_t* lse,
                                                         void* lse_data, uintptr_t stream, char** message) {
    dsa_tensor_t q_storage, kv_cache_storage, indices_storage, attn_sink_storage, topk_length_storage, out_storage,
        lse_storage;
    return dsa_go_checked(dsa_sparse_attention_paged(context, params, DSA_GO_TENSOR(q), DSA_GO_TENSOR(kv_cache),
                                                     DSA_GO_TENSOR(indices), DSA_GO_TENSOR(attn_sink),
                                                     DSA_GO_TENSOR(topk_length), DSA_GO_TENSOR(out), DSA_GO_TENSOR(lse),
                                                     (dsa_stream_t)stream), message);
}

static inline dsa_status_t dsa_go_mla_cache_write(dsa_context_t* context, const dsa_tensor_t* c_kv, void* c_kv_data,
                                                  const dsa_tensor_t* k_pe, void* k_pe_data,
                                                  const dsa_tensor_t* slot_mapping, void* slot_mapping_data,
                                                  const dsa_tensor_t* kv_cache, void* kv_cache_data, uintptr_t stream,
                                                  char** message) {
    dsa_tensor_t c_kv_storage, k_pe_storage, slot_mapping_storage, kv_cache_storage;
    return dsa_go_checked(dsa_mla_cache_write(context, DSA_GO_TENSOR(c_kv), DSA_GO_TENSOR(k_pe),
                                              DSA_GO_TENSOR(slot_mapping), DSA_GO_TENSOR(kv_cache),
                                              (dsa_stream_t)stream), message);
}

/* A workspace is Go memory (workspace_data) or a device address; NULL and 0 let libdsa allocate. */
static inline void* dsa_go_workspace(void* data, uintptr_t address) {
    return data != NULL ? data : (void*)address;
}

static inline dsa_status_t dsa_go_indexer_topk_workspace_size(const dsa_context_t* context, int64_t num_queries,
                                                              int64_t num_tokens, size_t* bytes, char** message) {
    return dsa_go_checked(dsa_indexer_topk_workspace_size(context, num_queries, num_tokens, bytes), message);
}

static inline dsa_status_t dsa_go_indexer_topk(dsa_context_t* context, const dsa_indexer_params_t* indexer_params,
                                               const dsa_topk_params_t* topk_params, const dsa_tensor_t* q,
                                               void* q_data, const dsa_tensor_t* weights, void* weights_data,
                                               const dsa_tensor_t* k, void* k_data, const dsa_tensor_t* k_scale,
                                               void* k_scale_data, const dsa_tensor_t* ks, void* ks_data,
                                               const dsa_tensor_t* ke, void* ke_data, const dsa_tensor_t* indices,
                                               void* indices_data, void* workspace_data, uintptr_t workspace_address,
                                               size_t workspace_bytes, uintptr_t stream, char** message) {
    dsa_tensor_t q_storage, weights_storage, k_storage, k_scale_storage, ks_storage, ke_storage, indices_storage;
    return dsa_go_checked(dsa_indexer_topk(context, indexer_params, topk_params, DSA_GO_TENSOR(q), DSA_GO_TENSOR(weights),
                                           DSA_GO_TENSOR(k), DSA_GO_TENSOR(k_scale), DSA_GO_TENSOR(ks), DSA_GO_TENSOR(ke),
                                           DSA_GO_TENSOR(indices), dsa_go_workspace(workspace_data, workspace_address),
                                           workspace_bytes, (dsa_stream_t)stream), message);
}

static inline dsa_status_t dsa_go_indexer_topk_paged(dsa_context_t* context, const dsa_indexer_params_t* indexer_params,
                                                     const dsa_topk_params_t* topk_params, const dsa_tensor_t* q,
                                                     void* q_data, const dsa_tensor_t* weights, void* weights_data,
                                                     const dsa_tensor_t* k_cache, void* k_cache_data,
                                                     const dsa_tensor_t* block_table, void* block_table_data,
                                                     const dsa_tensor_t* context_lens, void* context_lens_data,
                                                     const dsa_tensor_t* indices, void* indices_data,
                                                     const dsa_tensor_t* slots, void* slots_data, void* workspace_data,
                                                     uintptr_t workspace_address, size_t workspace_bytes,
                                                     uintptr_t stream, char** message) {
    dsa_tensor_t q_storage, weights_storage, k_cache_storage, block_table_storage, context_lens_storage, indices_storage,
        slots_storage;
    return dsa_go_checked(dsa_indexer_topk_paged(context, indexer_params, topk_params, DSA_GO_TENSOR(q),
                                                 DSA_GO_TENSOR(weights), DSA_GO_TENSOR(k_cache),
                                                 DSA_GO_TENSOR(block_table), DSA_GO_TENSOR(context_lens),
                                                 DSA_GO_TENSOR(indices), DSA_GO_TENSOR(slots),
                                                 dsa_go_workspace(workspace_data, workspace_address), workspace_bytes,
                                                 (dsa_stream_t)stream), message);
}

static inline dsa_status_t dsa_go_attention_workspace_size(const dsa_context_t* context,
                                                           const dsa_topk_params_t* topk_params, int64_t num_queries,
                                                           int64_t num_tokens, size_t* bytes, char** message) {
    return dsa_go_checked(dsa_attention_workspace_size(context, topk_params, num_queries, num_tokens, bytes), message);
}

static inline dsa_status_t dsa_go_attention(dsa_context_t* context, const dsa_indexer_params_t* indexer_params,
                                            const dsa_topk_params_t* topk_params,
                                            const dsa_sparse_attention_params_t* attention_params,
                                            const dsa_tensor_t* index_q, void* index_q_data,
                                            const dsa_tensor_t* index_weights, void* index_weights_data,
                                            const dsa_tensor_t* index_k, void* index_k_data,
                                            const dsa_tensor_t* index_k_scale, void* index_k_scale_data,
                                            const dsa_tensor_t* ks, void* ks_data, const dsa_tensor_t* ke, void* ke_data,
                                            const dsa_tensor_t* q, void* q_data, const dsa_tensor_t* kv, void* kv_data,
                                            const dsa_tensor_t* attn_sink, void* attn_sink_data, const dsa_tensor_t* out,
                                            void* out_data, const dsa_tensor_t* lse, void* lse_data,
                                            const dsa_tensor_t* selected, void* selected_data, void* workspace_data,
                                            uintptr_t workspace_address, size_t workspace_bytes, uintptr_t stream,
                                            char** message) {
    dsa_tensor_t index_q_storage, index_weights_storage, index_k_storage, index_k_scale_storage, ks_storage, ke_storage,
        q_storage, kv_storage, attn_sink_storage, out_storage, lse_storage, selected_storage;
    return dsa_go_checked(dsa_attention(context, indexer_params, topk_params, attention_params, DSA_GO_TENSOR(index_q),
                                        DSA_GO_TENSOR(index_weights), DSA_GO_TENSOR(index_k),
                                        DSA_GO_TENSOR(index_k_scale), DSA_GO_TENSOR(ks), DSA_GO_TENSOR(ke),
                                        DSA_GO_TENSOR(q), DSA_GO_TENSOR(kv), DSA_GO_TENSOR(attn_sink),
                                        DSA_GO_TENSOR(out), DSA_GO_TENSOR(lse), DSA_GO_TENSOR(selected),
                                        dsa_go_workspace(workspace_data, workspace_address), workspace_bytes,
                                        (dsa_stream_t)stream), message);
}

static inline dsa_status_t dsa_go_attention_paged(dsa_context_t* context, const dsa_indexer_params_t* indexer_params,
                                                  const dsa_topk_params_t* topk_params,
                                                  const dsa_sparse_attention_params_t* attention_params,
                                                  const dsa_tensor_t* index_q, void* index_q_data,
                                                  const dsa_tensor_t* index_weights, void* index_weights_data,
                                                  const dsa_tensor_t* index_k_cache, void* index_k_cache_data,
                                                  const dsa_tensor_t* block_table, void* block_table_data,
                                                  const dsa_tensor_t* context_lens, void* context_lens_data,
                                                  const dsa_tensor_t* q, void* q_data, const dsa_tensor_t* kv_cache,
                                                  void* kv_cache_data, const dsa_tensor_t* attn_sink,
                                                  void* attn_sink_data, const dsa_tensor_t* out, void* out_data,
                                                  const dsa_tensor_t* lse, void* lse_data, const dsa_tensor_t* selected,
                                                  void* selected_data, void* workspace_data,
                                                  uintptr_t workspace_address, size_t workspace_bytes,
                                                  uintptr_t stream, char** message) {
    dsa_tensor_t index_q_storage, index_weights_storage, index_k_cache_storage, block_table_storage,
        context_lens_storage, q_storage, kv_cache_storage, attn_sink_storage, out_storage, lse_storage,
        selected_storage;
    return dsa_go_checked(dsa_attention_paged(context, indexer_params, topk_params, attention_params,
                                              DSA_GO_TENSOR(index_q), DSA_GO_TENSOR(index_weights),
                                              DSA_GO_TENSOR(index_k_cache), DSA_GO_TENSOR(block_table),
                                              DSA_GO_TENSOR(context_lens), DSA_GO_TENSOR(q), DSA_GO_TENSOR(kv_cache),
                                              DSA_GO_TENSOR(attn_sink), DSA_GO_TENSOR(out), DSA_GO_TENSOR(lse),
                                              DSA_GO_TENSOR(selected),
                                              dsa_go_workspace(workspace_data, workspace_address), workspace_bytes,
                                              (dsa_stream_t)stream), message);
}

static inline dsa_status_t dsa_go_indexer_loss(dsa_context_t* context, const dsa_indexer_loss_params_t* params,
                                               const dsa_tensor_t* index_q, void* index_q_data,
                                               const dsa_tensor_t* index_k, void* index_k_data,
                                               const dsa_tensor_t* weights, void* weights_data, const dsa_tensor_t* ks,
                                               void* ks_data, const dsa_tensor_t* ke, void* ke_data,
                                               const dsa_tensor_t* indices, void* indices_data,
                                               const dsa_tensor_t* teacher_q, void* teacher_q_data,
                                               const dsa_tensor_t* teacher_k, void* teacher_k_data,
                                               const dsa_tensor_t* teacher_probs, void* teacher_probs_data,
                                               const dsa_tensor_t* loss, void* loss_data, const dsa_tensor_t* row_loss,
                                               void* row_loss_data, const dsa_tensor_t* d_index_q,
                                               void* d_index_q_data, const dsa_tensor_t* d_index_k,
                                               void* d_index_k_data, const dsa_tensor_t* d_weights,
                                               void* d_weights_data, uintptr_t stream, char** message) {
    dsa_tensor_t index_q_storage, index_k_storage, weights_storage, ks_storage, ke_storage, indices_storage,
        teacher_q_storage, teacher_k_storage, teacher_probs_storage, loss_storage, row_loss_storage,
        d_index_q_storage, d_index_k_storage, d_weights_storage;
    return dsa_go_checked(dsa_indexer_loss(context, params, DSA_GO_TENSOR(index_q), DSA_GO_TENSOR(index_k),
                                           DSA_GO_TENSOR(weights), DSA_GO_TENSOR(ks), DSA_GO_TENSOR(ke),
                                           DSA_GO_TENSOR(indices), DSA_GO_TENSOR(teacher_q), DSA_GO_TENSOR(teacher_k),
                                           DSA_GO_TENSOR(teacher_probs), DSA_GO_TENSOR(loss), DSA_GO_TENSOR(row_loss),
                                           DSA_GO_TENSOR(d_index_q), DSA_GO_TENSOR(d_index_k),
                                           DSA_GO_TENSOR(d_weights), (dsa_stream_t)stream), message);
}

static inline dsa_status_t dsa_go_sparse_attention_backward_workspace_size(
    const dsa_context_t* context, const dsa_sparse_attention_backward_params_t* params, int64_t num_queries,
    int64_t topk, int64_t num_tokens, int64_t d_qk, size_t* bytes, char** message) {
    return dsa_go_checked(dsa_sparse_attention_backward_workspace_size(context, params, num_queries, topk, num_tokens,
                                                                       d_qk, bytes),
                          message);
}

static inline dsa_status_t dsa_go_sparse_attention_backward(
    dsa_context_t* context, const dsa_sparse_attention_backward_params_t* params, const dsa_tensor_t* q, void* q_data,
    const dsa_tensor_t* kv, void* kv_data, const dsa_tensor_t* indices, void* indices_data,
    const dsa_tensor_t* attn_sink, void* attn_sink_data, const dsa_tensor_t* topk_length, void* topk_length_data,
    const dsa_tensor_t* out, void* out_data, const dsa_tensor_t* lse, void* lse_data, const dsa_tensor_t* dout,
    void* dout_data, const dsa_tensor_t* dq, void* dq_data, const dsa_tensor_t* dkv, void* dkv_data,
    const dsa_tensor_t* d_attn_sink, void* d_attn_sink_data, void* workspace_data, uintptr_t workspace_address,
    size_t workspace_bytes, uintptr_t stream, char** message) {
    dsa_tensor_t q_storage, kv_storage, indices_storage, attn_sink_storage, topk_length_storage, out_storage,
        lse_storage, dout_storage, dq_storage, dkv_storage, d_attn_sink_storage;
    return dsa_go_checked(dsa_sparse_attention_backward(context, params, DSA_GO_TENSOR(q), DSA_GO_TENSOR(kv),
                                                        DSA_GO_TENSOR(indices), DSA_GO_TENSOR(attn_sink),
                                                        DSA_GO_TENSOR(topk_length), DSA_GO_TENSOR(out),
                                                        DSA_GO_TENSOR(lse), DSA_GO_TENSOR(dout), DSA_GO_TENSOR(dq),
                                                        DSA_GO_TENSOR(dkv), DSA_GO_TENSOR(d_attn_sink),
                                                        dsa_go_workspace(workspace_data, workspace_address),
                                                        workspace_bytes, (dsa_stream_t)stream),
                          message);
}

#endif
