/* C ABI of lt2c's runtime: load a compiled model.bin on the CPU or a GPU, run its graph whole,
 * or open a decode session, prefill prompts, decode one token per sequence. Built as liblt2_capi.so by
 * `cargo build --release -p lt2-capi`. Python: `lt2.runtime` (ctypes).
 *
 * Errors: functions returning a pointer return NULL, functions returning int return nonzero,
 * and write a NUL-terminated message into `err` (at most err_len bytes, may be NULL).
 * A model must outlive its sessions. Not thread-safe: one thread per model. */
#ifndef LT2_H
#define LT2_H
#include <stddef.h>
#include <stdint.h>

typedef struct lt2_model lt2_model;
typedef struct lt2_session lt2_session;

/* device: "cpu", "cuda" or "auto" (CUDA when usable, else the CPU). */
lt2_model* lt2_model_open(const char* path, const char* device, char* err, size_t err_len);
void lt2_model_free(lt2_model* m);
/* The backend that runs and why, e.g. "cpu (requested: cpu)". Owned by the model. */
const char* lt2_model_device(const lt2_model* m);
/* Vocabulary size (the last dim of the logits output); 0 when the model is not a language
 * model (token ids in, logits out): it then runs whole (lt2_model_run) but opens no session. */
size_t lt2_model_vocab(const lt2_model* m);
/* The inputs and outputs as JSON: {"inputs": [{"name": "input_ids", "dtype": "int64",
 * "dims": ["batch", "seq"]}, ...], "outputs": [...]}; a dim is a number or a symbolic name.
 * Owned by the model. */
const char* lt2_model_signature(const lt2_model* m);

/* Element type codes. */
#define LT2_FLOAT32 0
#define LT2_INT64 1
#define LT2_BOOL 2 /* one byte per element, 0 or 1 */

typedef struct lt2_outputs lt2_outputs;
/* Runs the whole graph once (no session, no caches) on n named inputs: input i has element
 * type dtypes[i], ranks[i] dims dims[i][..], and row-major elements data[i]. Returns every
 * output, in the model's output order; free with lt2_outputs_free. */
lt2_outputs* lt2_model_run(const lt2_model* m, size_t n, const char* const* names, const int* dtypes, const size_t* ranks,
                           const int64_t* const* dims, const void* const* data, char* err, size_t err_len);
size_t lt2_outputs_count(const lt2_outputs* o);
const char* lt2_outputs_name(const lt2_outputs* o, size_t i);
int lt2_outputs_dtype(const lt2_outputs* o, size_t i);
size_t lt2_outputs_rank(const lt2_outputs* o, size_t i);
const int64_t* lt2_outputs_dims(const lt2_outputs* o, size_t i);
/* Row-major elements of output i; valid until lt2_outputs_free. */
const void* lt2_outputs_data(const lt2_outputs* o, size_t i);
void lt2_outputs_free(lt2_outputs* o);

lt2_session* lt2_session_new(lt2_model* m, size_t max_context, char* err, size_t err_len);
/* Under Ouro's early exit: a token stops looping once its cumulative exit probability reaches
 * exit_threshold in (0, 1] (1: every loop runs). Needs a model with an exit gate. */
lt2_session* lt2_session_new_with_exit(lt2_model* m, size_t max_context, float exit_threshold, char* err, size_t err_len);
/* Loop iterations run and skipped by early exit so far (either pointer may be NULL). */
void lt2_session_loop_iterations(const lt2_session* s, uint64_t* run, uint64_t* skipped);
void lt2_session_free(lt2_session* s);
/* n_seqs prompts of `len` tokens each (row-major ids[n_seqs * len]); writes each prompt's last
 * logits into logits[n_seqs * vocab]. Replaces the session's sequences. */
int lt2_session_prefill(lt2_session* s, const int64_t* ids, size_t n_seqs, size_t len, float* logits, char* err, size_t err_len);
/* Prompts of different lengths: prompt i is the next lens[i] tokens of ids (sum(lens) in all);
 * writes each one's last logits into logits[n_seqs * vocab]. Replaces the session's sequences. */
int lt2_session_prefill_ragged(lt2_session* s, const int64_t* ids, const size_t* lens, size_t n_seqs, float* logits, char* err, size_t err_len);
/* One token per sequence; writes logits[n_seqs * vocab]. */
int lt2_session_decode(lt2_session* s, const int64_t* next, size_t n_seqs, float* logits, char* err, size_t err_len);
/* Whether decode steps are replayed as a recorded CUDA graph (0: op by op). */
int lt2_session_decode_recorded(const lt2_session* s);

/* Token choice as `lt2c generate` makes it: greedy at temperature 0, else sampling with
 * top_k (0: all) and top_p (1: all) from a generator seeded with `seed` (same seed, same tokens). */
typedef struct lt2_sampler lt2_sampler;
lt2_sampler* lt2_sampler_new(float temperature, size_t top_k, float top_p, uint64_t seed);
/* The chosen token id (-1 on NULL arguments). */
int64_t lt2_sampler_pick(lt2_sampler* s, const float* logits, size_t vocab);
void lt2_sampler_free(lt2_sampler* s);

#endif
