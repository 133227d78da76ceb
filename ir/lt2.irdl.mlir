// The lt2 dialect: ops of looped linear-time transformers (LT2, Ouro) as lt2c sees them.
// Loaded at start (mlirLoadIRDLDialects) so every op is verified on parse. Tensors are builtin
// ranked tensors; batch and sequence dims stay `?` (their symbolic names live in `lt2.dims`
// argument attributes and in shape attributes as dim expressions such as "batch*seq").
// Note: each operand gets its own constraint value; reusing one would force equal types.
irdl.dialect @lt2 {
  // A small constant (shape values, epsilons, exponents) kept in the IR so passes can match on it.
  irdl.operation @constant {
    %r_out = irdl.base "!builtin.tensor"
    %a_value = irdl.base "#builtin.dense_int_or_fp_elements"
    irdl.operands()
    irdl.results(out: %r_out)
    irdl.attributes {"value" = %a_value}
  }
  // A named weight of the model (ONNX initializer or folded constant); its bytes live beside the IR.
  irdl.operation @weight {
    %r_out = irdl.base "!builtin.tensor"
    %a_name = irdl.base "#builtin.string"
    irdl.operands()
    irdl.results(out: %r_out)
    irdl.attributes {"name" = %a_name}
  }
  // Rows of `table` picked by integer `ids` (ONNX Gather on axis 0).
  irdl.operation @embed {
    %table = irdl.base "!builtin.tensor"
    %ids = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    irdl.operands(table: %table, ids: %ids)
    irdl.results(out: %r_out)
  }
  // ONNX Gather along `axis`.
  irdl.operation @gather {
    %data = irdl.base "!builtin.tensor"
    %indices = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    %a_axis = irdl.base "#builtin.integer"
    irdl.operands(data: %data, indices: %indices)
    irdl.results(out: %r_out)
    irdl.attributes {"axis" = %a_axis}
  }
  // x / sqrt(mean(x^2 over axes axis..rank) + epsilon) * scale (RMSNormalization-23).
  irdl.operation @rms_norm {
    %x = irdl.base "!builtin.tensor"
    %scale = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    %a_epsilon = irdl.base "#builtin.float"
    %a_axis = irdl.base "#builtin.integer"
    irdl.operands(x: %x, scale: %scale)
    irdl.results(out: %r_out)
    irdl.attributes {"epsilon" = %a_epsilon, "axis" = %a_axis}
  }
  // x[..., K] times a weight w[K, N] (or w[N, K] when transpose_w), plus optional bias.
  irdl.operation @linear {
    %x = irdl.base "!builtin.tensor"
    %w = irdl.base "!builtin.tensor"
    %bias = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    %a_transpose_w = irdl.base "#builtin.integer"
    irdl.operands(x: %x, w: %w, bias: optional %bias)
    irdl.results(out: %r_out)
    irdl.attributes {"transpose_w" = %a_transpose_w}
  }
  // Batched matrix product with broadcasting (ONNX MatMul) of two activations.
  irdl.operation @matmul {
    %a = irdl.base "!builtin.tensor"
    %b = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    irdl.operands(a: %a, b: %b)
    irdl.results(out: %r_out)
  }
  // Elementwise add with numpy broadcasting.
  irdl.operation @add {
    %lhs = irdl.base "!builtin.tensor"
    %rhs = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    irdl.operands(lhs: %lhs, rhs: %rhs)
    irdl.results(out: %r_out)
  }
  // Elementwise sub with numpy broadcasting.
  irdl.operation @sub {
    %lhs = irdl.base "!builtin.tensor"
    %rhs = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    irdl.operands(lhs: %lhs, rhs: %rhs)
    irdl.results(out: %r_out)
  }
  // Elementwise mul with numpy broadcasting.
  irdl.operation @mul {
    %lhs = irdl.base "!builtin.tensor"
    %rhs = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    irdl.operands(lhs: %lhs, rhs: %rhs)
    irdl.results(out: %r_out)
  }
  // Elementwise div with numpy broadcasting.
  irdl.operation @div {
    %lhs = irdl.base "!builtin.tensor"
    %rhs = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    irdl.operands(lhs: %lhs, rhs: %rhs)
    irdl.results(out: %r_out)
  }
  // Elementwise pow with numpy broadcasting.
  irdl.operation @pow {
    %lhs = irdl.base "!builtin.tensor"
    %rhs = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    irdl.operands(lhs: %lhs, rhs: %rhs)
    irdl.results(out: %r_out)
  }
  // Elementwise neg.
  irdl.operation @neg {
    %x = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    irdl.operands(x: %x)
    irdl.results(out: %r_out)
  }
  // Elementwise exp.
  irdl.operation @exp {
    %x = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    irdl.operands(x: %x)
    irdl.results(out: %r_out)
  }
  // Elementwise sigmoid.
  irdl.operation @sigmoid {
    %x = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    irdl.operands(x: %x)
    irdl.results(out: %r_out)
  }
  // Elementwise softplus.
  irdl.operation @softplus {
    %x = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    irdl.operands(x: %x)
    irdl.results(out: %r_out)
  }
  // Elementwise sqrt.
  irdl.operation @sqrt {
    %x = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    irdl.operands(x: %x)
    irdl.results(out: %r_out)
  }
  // Elementwise silu.
  irdl.operation @silu {
    %x = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    irdl.operands(x: %x)
    irdl.results(out: %r_out)
  }
  // silu(gate) * up, elementwise over operands of one shape (SwiGLU's product; fuse-silu-mul).
  irdl.operation @silu_mul {
    %gate = irdl.base "!builtin.tensor"
    %up = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    irdl.operands(gate: %gate, up: %up)
    irdl.results(out: %r_out)
  }
  // Elementwise log.
  irdl.operation @log {
    %x = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    irdl.operands(x: %x)
    irdl.results(out: %r_out)
  }
  // Elementwise tanh.
  irdl.operation @tanh {
    %x = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    irdl.operands(x: %x)
    irdl.results(out: %r_out)
  }
  // Elementwise relu.
  irdl.operation @relu {
    %x = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    irdl.operands(x: %x)
    irdl.results(out: %r_out)
  }
  // Elementwise reciprocal.
  irdl.operation @reciprocal {
    %x = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    irdl.operands(x: %x)
    irdl.results(out: %r_out)
  }
  // Elementwise abs.
  irdl.operation @abs {
    %x = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    irdl.operands(x: %x)
    irdl.results(out: %r_out)
  }
  // Elementwise sine (radians).
  irdl.operation @sin {
    %x = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    irdl.operands(x: %x)
    irdl.results(out: %r_out)
  }
  // Elementwise cosine (radians).
  irdl.operation @cos {
    %x = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    irdl.operands(x: %x)
    irdl.results(out: %r_out)
  }
  // sum over `axes` (non-negative), keeping reduced dims when keepdims.
  irdl.operation @reduce_sum {
    %x = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    %a_axes = irdl.base "#builtin.dense_array"
    %a_keepdims = irdl.base "#builtin.integer"
    irdl.operands(x: %x)
    irdl.results(out: %r_out)
    irdl.attributes {"axes" = %a_axes, "keepdims" = %a_keepdims}
  }
  // mean over `axes` (non-negative), keeping reduced dims when keepdims.
  irdl.operation @reduce_mean {
    %x = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    %a_axes = irdl.base "#builtin.dense_array"
    %a_keepdims = irdl.base "#builtin.integer"
    irdl.operands(x: %x)
    irdl.results(out: %r_out)
    irdl.attributes {"axes" = %a_axes, "keepdims" = %a_keepdims}
  }
  // max over `axes` (non-negative), keeping reduced dims when keepdims.
  irdl.operation @reduce_max {
    %x = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    %a_axes = irdl.base "#builtin.dense_array"
    %a_keepdims = irdl.base "#builtin.integer"
    irdl.operands(x: %x)
    irdl.results(out: %r_out)
    irdl.attributes {"axes" = %a_axes, "keepdims" = %a_keepdims}
  }
  // Same elements, new shape; `shape` holds one dim expression per output dim.
  irdl.operation @reshape {
    %x = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    %a_shape = irdl.base "#builtin.array"
    irdl.operands(x: %x)
    irdl.results(out: %r_out)
    irdl.attributes {"shape" = %a_shape}
  }
  // Permutes axes.
  irdl.operation @transpose {
    %x = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    %a_perm = irdl.base "#builtin.dense_array"
    irdl.operands(x: %x)
    irdl.results(out: %r_out)
    irdl.attributes {"perm" = %a_perm}
  }
  // Broadcasts to `shape` (dim expressions), ONNX Expand semantics.
  irdl.operation @expand {
    %x = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    %a_shape = irdl.base "#builtin.array"
    irdl.operands(x: %x)
    irdl.results(out: %r_out)
    irdl.attributes {"shape" = %a_shape}
  }
  // int64 [size]: start, start + delta, ...; size is a dim expression.
  irdl.operation @range {
    %r_out = irdl.base "!builtin.tensor"
    %a_start = irdl.base "#builtin.integer"
    %a_delta = irdl.base "#builtin.integer"
    %a_size = irdl.base "#builtin.string"
    irdl.operands()
    irdl.results(out: %r_out)
    irdl.attributes {"start" = %a_start, "delta" = %a_delta, "size" = %a_size}
  }
  // Concatenation of two tensors along `axis` (longer concatenations chain this op).
  irdl.operation @concat {
    %lhs = irdl.base "!builtin.tensor"
    %rhs = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    %a_axis = irdl.base "#builtin.integer"
    irdl.operands(lhs: %lhs, rhs: %rhs)
    irdl.results(out: %r_out)
    irdl.attributes {"axis" = %a_axis}
  }
  // ONNX Slice with constant bounds.
  irdl.operation @slice {
    %x = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    %a_axes = irdl.base "#builtin.dense_array"
    %a_starts = irdl.base "#builtin.dense_array"
    %a_ends = irdl.base "#builtin.dense_array"
    %a_steps = irdl.base "#builtin.dense_array"
    irdl.operands(x: %x)
    irdl.results(out: %r_out)
    irdl.attributes {"axes" = %a_axes, "starts" = %a_starts, "ends" = %a_ends, "steps" = %a_steps}
  }
  // Depthwise causal 1-D conv over channels-last x[B, L, C] with weight [C, k], optional bias and past state [B, C, k-1], and an optional fused activation ("" or "silu"); returns (y, state_out [B, C, k-1]).
  irdl.operation @causal_conv {
    %x = irdl.base "!builtin.tensor"
    %w = irdl.base "!builtin.tensor"
    %bias = irdl.base "!builtin.tensor"
    %state = irdl.base "!builtin.tensor"
    %r_y = irdl.base "!builtin.tensor"
    %r_state_out = irdl.base "!builtin.tensor"
    %a_activation = irdl.base "#builtin.string"
    irdl.operands(x: %x, w: %w, bias: optional %bias, state: optional %state)
    irdl.results(y: %r_y, state_out: %r_state_out)
    irdl.attributes {"activation" = %a_activation}
  }
  // Gated delta rule (ONNX LinearAttention-27): packed q/k [B,T,H*K], v [B,T,Hkv*V], log-decay g, beta, initial state [B,Hkv,K,V]; returns (o, final state). update_rule: gated_delta | linear | gated | delta.
  irdl.operation @gdn {
    %q = irdl.base "!builtin.tensor"
    %k = irdl.base "!builtin.tensor"
    %v = irdl.base "!builtin.tensor"
    %g = irdl.base "!builtin.tensor"
    %beta = irdl.base "!builtin.tensor"
    %state = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    %r_state_out = irdl.base "!builtin.tensor"
    %a_q_heads = irdl.base "#builtin.integer"
    %a_kv_heads = irdl.base "#builtin.integer"
    %a_scale = irdl.base "#builtin.float"
    %a_update_rule = irdl.base "#builtin.string"
    irdl.operands(q: %q, k: %k, v: %v, g: optional %g, beta: optional %beta, state: optional %state)
    irdl.results(out: %r_out, state_out: %r_state_out)
    irdl.attributes {"q_heads" = %a_q_heads, "kv_heads" = %a_kv_heads, "scale" = %a_scale, "update_rule" = %a_update_rule}
  }
  // Softmax attention over packed q [B,Lq,Hq*D], k [B,Lk,Hkv*D], v [B,Lk,Hkv*Dv] (GQA when Hq > Hkv); causal is bottom-right aligned; window_left / window_right bound the keys around the query's position (-1 = unbounded; a causal window of w tokens is w-1, 0); query i sits at position i + Lk - Lq, or at i when top_left (ONNX Attention without a past). An optional mask broadcastable to [B, Hq, Lq, Lk] is added to the scores (bool: false = -inf).
  irdl.operation @attention {
    %q = irdl.base "!builtin.tensor"
    %k = irdl.base "!builtin.tensor"
    %v = irdl.base "!builtin.tensor"
    %mask = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    %a_q_heads = irdl.base "#builtin.integer"
    %a_kv_heads = irdl.base "#builtin.integer"
    %a_scale = irdl.base "#builtin.float"
    %a_causal = irdl.base "#builtin.integer"
    %a_window_left = irdl.base "#builtin.integer"
    %a_window_right = irdl.base "#builtin.integer"
    %a_top_left = irdl.base "#builtin.integer"
    irdl.operands(q: %q, k: %k, v: %v, mask: optional %mask)
    irdl.results(out: %r_out)
    irdl.attributes {"q_heads" = %a_q_heads, "kv_heads" = %a_kv_heads, "scale" = %a_scale, "causal" = %a_causal, "window_left" = %a_window_left, "window_right" = %a_window_right, "top_left" = %a_top_left}
  }
  // Rotary embedding (RotaryEmbedding-23) of packed x [B,L,H*D] with cos/sin tables [P, R/2] gathered at position_ids [B, L].
  irdl.operation @rope {
    %x = irdl.base "!builtin.tensor"
    %cos = irdl.base "!builtin.tensor"
    %sin = irdl.base "!builtin.tensor"
    %position_ids = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    %a_num_heads = irdl.base "#builtin.integer"
    %a_interleaved = irdl.base "#builtin.integer"
    %a_rotary_dim = irdl.base "#builtin.integer"
    irdl.operands(x: %x, cos: %cos, sin: %sin, position_ids: optional %position_ids)
    irdl.results(out: %r_out)
    irdl.attributes {"num_heads" = %a_num_heads, "interleaved" = %a_interleaved, "rotary_dim" = %a_rotary_dim}
  }
  // Softmax along `axis`.
  irdl.operation @softmax {
    %x = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    %a_axis = irdl.base "#builtin.integer"
    irdl.operands(x: %x)
    irdl.results(out: %r_out)
    irdl.attributes {"axis" = %a_axis}
  }
  // Elementwise select: cond ? lhs : rhs, with broadcasting.
  irdl.operation @where {
    %c = irdl.base "!builtin.tensor"
    %a = irdl.base "!builtin.tensor"
    %b = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    irdl.operands(cond: %c, lhs: %a, rhs: %b)
    irdl.results(out: %r_out)
  }
  // Elementwise comparison or logic to i1, with broadcasting; predicate: eq lt le gt ge and or
  // (not: use the single-operand form).
  irdl.operation @compare {
    %a = irdl.base "!builtin.tensor"
    %b = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    %a_pred = irdl.base "#builtin.string"
    irdl.operands(lhs: %a, rhs: optional %b)
    irdl.results(out: %r_out)
    irdl.attributes {"predicate" = %a_pred}
  }
  // Element type conversion to the result's element type.
  irdl.operation @cast {
    %x = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    irdl.operands(x: %x)
    irdl.results(out: %r_out)
  }
  // Keeps the lower (upper = false) or upper triangle of the last two dims, offset k (Trilu).
  irdl.operation @trilu {
    %x = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    %a_upper = irdl.base "#builtin.integer"
    %a_k = irdl.base "#builtin.integer"
    irdl.operands(x: %x)
    irdl.results(out: %r_out)
    irdl.attributes {"upper" = %a_upper, "k" = %a_k}
  }
  // lt2::LightningIndexer: each query's top_k earlier positions by index score (mean_dot or
  // relu_weighted), int64 [B, T, top_k], -1 padded.
  irdl.operation @lightning_indexer {
    %q = irdl.base "!builtin.tensor"
    %k = irdl.base "!builtin.tensor"
    %w = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    %a_heads = irdl.base "#builtin.integer"
    %a_top_k = irdl.base "#builtin.integer"
    %a_score = irdl.base "#builtin.string"
    irdl.operands(q_index: %q, k_index: %k, weights: optional %w)
    irdl.results(out: %r_out)
    irdl.attributes {"num_heads" = %a_heads, "top_k" = %a_top_k, "score" = %a_score}
  }
  // lt2::SparseAttention: softmax attention over the positions in `indices` (shared by heads).
  irdl.operation @sparse_attention {
    %q = irdl.base "!builtin.tensor"
    %k = irdl.base "!builtin.tensor"
    %v = irdl.base "!builtin.tensor"
    %i = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    %a_q_heads = irdl.base "#builtin.integer"
    %a_kv_heads = irdl.base "#builtin.integer"
    %a_scale = irdl.base "#builtin.float"
    irdl.operands(q: %q, k: %k, v: %v, indices: %i)
    irdl.results(out: %r_out)
    irdl.attributes {"q_heads" = %a_q_heads, "kv_heads" = %a_kv_heads, "scale" = %a_scale}
  }
  // TopK along `axis`: (values, int64 indices), sorted, ties to the lower index; k is a dim
  // expression such as "min(4,seq)".
  irdl.operation @topk {
    %x = irdl.base "!builtin.tensor"
    %r_v = irdl.base "!builtin.tensor"
    %r_i = irdl.base "!builtin.tensor"
    %a_axis = irdl.base "#builtin.integer"
    %a_largest = irdl.base "#builtin.integer"
    %a_k = irdl.base "#builtin.string"
    irdl.operands(x: %x)
    irdl.results(values: %r_v, indices: %r_i)
    irdl.attributes {"axis" = %a_axis, "largest" = %a_largest, "k" = %a_k}
  }
  // Elementwise minimum / maximum with numpy broadcasting.
  irdl.operation @min {
    %lhs = irdl.base "!builtin.tensor"
    %rhs = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    irdl.operands(lhs: %lhs, rhs: %rhs)
    irdl.results(out: %r_out)
  }
  irdl.operation @max {
    %lhs = irdl.base "!builtin.tensor"
    %rhs = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    irdl.operands(lhs: %lhs, rhs: %rhs)
    irdl.results(out: %r_out)
  }
  // The looped stack: runs its region `trip_count` times. Operands are the initial loop-carried
  // values (up to 8, each of its own type: IRDL constraint variables unify across a variadic, so
  // each carried value has its own optional segment). The region's block takes (iteration
  // tensor<i64>, carried...) and ends with `gpu.yield` of the next carried values followed by
  // any per-iteration scan values; values of the enclosing function (the shared weights) are
  // used directly. Results: the last carried values, then each scan value stacked over
  // iterations ([trip_count, ...]).
  // Running sums along `axis` (ONNX CumSum with a compile-time axis), f32 or int64.
  irdl.operation @cumsum {
    %x = irdl.base "!builtin.tensor"
    %r_out = irdl.base "!builtin.tensor"
    %a_axis = irdl.base "#builtin.integer"
    %a_exclusive = irdl.base "#builtin.integer"
    %a_reverse = irdl.base "#builtin.integer"
    irdl.operands(x: %x)
    irdl.results(out: %r_out)
    irdl.attributes {"axis" = %a_axis, "exclusive" = %a_exclusive, "reverse" = %a_reverse}
  }
  // int64 values of dim expressions (shape arithmetic used as data), evaluated at run time.
  irdl.operation @dim_values {
    %r_out = irdl.base "!builtin.tensor"
    %a_dims = irdl.base "#builtin.array"
    irdl.operands()
    irdl.results(out: %r_out)
    irdl.attributes {"dims" = %a_dims}
  }
  irdl.operation @loop {
    %c0 = irdl.base "!builtin.tensor"
    %c1 = irdl.base "!builtin.tensor"
    %c2 = irdl.base "!builtin.tensor"
    %c3 = irdl.base "!builtin.tensor"
    %c4 = irdl.base "!builtin.tensor"
    %c5 = irdl.base "!builtin.tensor"
    %c6 = irdl.base "!builtin.tensor"
    %c7 = irdl.base "!builtin.tensor"
    %r0 = irdl.base "!builtin.tensor"
    %r1 = irdl.base "!builtin.tensor"
    %r2 = irdl.base "!builtin.tensor"
    %r3 = irdl.base "!builtin.tensor"
    %r4 = irdl.base "!builtin.tensor"
    %r5 = irdl.base "!builtin.tensor"
    %r6 = irdl.base "!builtin.tensor"
    %r7 = irdl.base "!builtin.tensor"
    %a_trip = irdl.base "#builtin.integer"
    %body = irdl.region
    irdl.operands(init0: optional %c0, init1: optional %c1, init2: optional %c2, init3: optional %c3, init4: optional %c4, init5: optional %c5, init6: optional %c6, init7: optional %c7)
    irdl.results(result0: optional %r0, result1: optional %r1, result2: optional %r2, result3: optional %r3, result4: optional %r4, result5: optional %r5, result6: optional %r6, result7: optional %r7)
    irdl.attributes {"trip_count" = %a_trip}
    irdl.regions(body: %body)
  }
}
