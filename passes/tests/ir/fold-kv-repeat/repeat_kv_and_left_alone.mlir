// passes: fold-kv-repeat, canonicalize
// @main: K and V heads repeated twice (HF's repeat_kv) before a fused attention → the attention
// reads the 2 heads with kv_heads = 2. @only_k: only K is repeated → left alone.
func.func @main(%q: tensor<?x?x32xf32>, %k: tensor<?x2x?x8xf32>, %v: tensor<?x2x?x8xf32>) -> tensor<?x?x32xf32> {
  %k1 = "lt2.reshape"(%k) {shape = ["batch", "2", "1", "seq", "8"]} : (tensor<?x2x?x8xf32>) -> tensor<?x2x1x?x8xf32>
  %k2 = "lt2.expand"(%k1) {shape = ["batch", "2", "2", "seq", "8"]} : (tensor<?x2x1x?x8xf32>) -> tensor<?x2x2x?x8xf32>
  %k3 = "lt2.reshape"(%k2) {shape = ["batch", "4", "seq", "8"]} : (tensor<?x2x2x?x8xf32>) -> tensor<?x4x?x8xf32>
  %k4 = "lt2.transpose"(%k3) {perm = array<i64: 0, 2, 1, 3>} : (tensor<?x4x?x8xf32>) -> tensor<?x?x4x8xf32>
  %k5 = "lt2.reshape"(%k4) {shape = ["batch", "seq", "32"]} : (tensor<?x?x4x8xf32>) -> tensor<?x?x32xf32>
  %v1 = "lt2.reshape"(%v) {shape = ["batch", "2", "1", "seq", "8"]} : (tensor<?x2x?x8xf32>) -> tensor<?x2x1x?x8xf32>
  %v2 = "lt2.expand"(%v1) {shape = ["batch", "2", "2", "seq", "8"]} : (tensor<?x2x1x?x8xf32>) -> tensor<?x2x2x?x8xf32>
  %v3 = "lt2.reshape"(%v2) {shape = ["batch", "4", "seq", "8"]} : (tensor<?x2x2x?x8xf32>) -> tensor<?x4x?x8xf32>
  %v4 = "lt2.transpose"(%v3) {perm = array<i64: 0, 2, 1, 3>} : (tensor<?x4x?x8xf32>) -> tensor<?x?x4x8xf32>
  %v5 = "lt2.reshape"(%v4) {shape = ["batch", "seq", "32"]} : (tensor<?x?x4x8xf32>) -> tensor<?x?x32xf32>
  %o = "lt2.attention"(%q, %k5, %v5) {causal = true, kv_heads = 4 : i64, q_heads = 4 : i64, scale = 0.353553385 : f32, top_left = false, window_left = -1 : i64, window_right = -1 : i64} : (tensor<?x?x32xf32>, tensor<?x?x32xf32>, tensor<?x?x32xf32>) -> tensor<?x?x32xf32>
  return %o : tensor<?x?x32xf32>
}
func.func @only_k(%q: tensor<?x?x32xf32>, %k: tensor<?x2x?x8xf32>, %v: tensor<?x?x32xf32>) -> tensor<?x?x32xf32> {
  %k1 = "lt2.reshape"(%k) {shape = ["batch", "2", "1", "seq", "8"]} : (tensor<?x2x?x8xf32>) -> tensor<?x2x1x?x8xf32>
  %k2 = "lt2.expand"(%k1) {shape = ["batch", "2", "2", "seq", "8"]} : (tensor<?x2x1x?x8xf32>) -> tensor<?x2x2x?x8xf32>
  %k3 = "lt2.reshape"(%k2) {shape = ["batch", "4", "seq", "8"]} : (tensor<?x2x2x?x8xf32>) -> tensor<?x4x?x8xf32>
  %k4 = "lt2.transpose"(%k3) {perm = array<i64: 0, 2, 1, 3>} : (tensor<?x4x?x8xf32>) -> tensor<?x?x4x8xf32>
  %k5 = "lt2.reshape"(%k4) {shape = ["batch", "seq", "32"]} : (tensor<?x?x4x8xf32>) -> tensor<?x?x32xf32>
  %o = "lt2.attention"(%q, %k5, %v) {causal = true, kv_heads = 4 : i64, q_heads = 4 : i64, scale = 0.353553385 : f32, top_left = false, window_left = -1 : i64, window_right = -1 : i64} : (tensor<?x?x32xf32>, tensor<?x?x32xf32>, tensor<?x?x32xf32>) -> tensor<?x?x32xf32>
  return %o : tensor<?x?x32xf32>
}
