// passes: raise-sdpa, fold-kv-repeat, canonicalize
// @main: torch's opset-18 SDPA over 4 query heads and 2 KV heads repeated (K^T written over the
// flattened repeat), sqrt(scale) on q and on k^T, an additive mask and the NaN guard → one
// lt2.attention with the mask, reading the 2 KV heads. @no_guard_bool_mask: a bool mask by
// `where`, no guard. @other_reader: the probabilities are also an output → left alone.
func.func @main(%q: tensor<?x4x?x16xf32>, %k: tensor<?x2x?x16xf32>, %v: tensor<?x2x?x16xf32>, %m: tensor<?x1x?x?xf32>) -> tensor<?x?x64xf32> {
  %s = "lt2.constant"() {value = dense<0.5> : tensor<f32>} : () -> tensor<f32>
  %zero = "lt2.constant"() {value = dense<0.0> : tensor<f32>} : () -> tensor<f32>
  %k1 = "lt2.reshape"(%k) {shape = ["batch", "2", "1", "seq", "16"]} : (tensor<?x2x?x16xf32>) -> tensor<?x2x1x?x16xf32>
  %k2 = "lt2.expand"(%k1) {shape = ["batch", "2", "2", "seq", "16"]} : (tensor<?x2x1x?x16xf32>) -> tensor<?x2x2x?x16xf32>
  %k3 = "lt2.reshape"(%k2) {shape = ["batch*4", "seq", "16"]} : (tensor<?x2x2x?x16xf32>) -> tensor<?x?x16xf32>
  %k4 = "lt2.transpose"(%k3) {perm = array<i64: 0, 2, 1>} : (tensor<?x?x16xf32>) -> tensor<?x16x?xf32>
  %kt = "lt2.reshape"(%k4) {shape = ["batch", "4", "16", "seq"]} : (tensor<?x16x?xf32>) -> tensor<?x4x16x?xf32>
  %v1 = "lt2.reshape"(%v) {shape = ["batch", "2", "1", "seq", "16"]} : (tensor<?x2x?x16xf32>) -> tensor<?x2x1x?x16xf32>
  %v2 = "lt2.expand"(%v1) {shape = ["batch", "2", "2", "seq", "16"]} : (tensor<?x2x1x?x16xf32>) -> tensor<?x2x2x?x16xf32>
  %v3 = "lt2.reshape"(%v2) {shape = ["batch", "4", "seq", "16"]} : (tensor<?x2x2x?x16xf32>) -> tensor<?x4x?x16xf32>
  %qs = "lt2.mul"(%q, %s) : (tensor<?x4x?x16xf32>, tensor<f32>) -> tensor<?x4x?x16xf32>
  %ks = "lt2.mul"(%kt, %s) : (tensor<?x4x16x?xf32>, tensor<f32>) -> tensor<?x4x16x?xf32>
  %sc = "lt2.matmul"(%qs, %ks) : (tensor<?x4x?x16xf32>, tensor<?x4x16x?xf32>) -> tensor<?x4x?x?xf32>
  %a = "lt2.add"(%sc, %m) : (tensor<?x4x?x?xf32>, tensor<?x1x?x?xf32>) -> tensor<?x4x?x?xf32>
  %p = "lt2.softmax"(%a) {axis = 3 : i64} : (tensor<?x4x?x?xf32>) -> tensor<?x4x?x?xf32>
  %eq = "lt2.compare"(%p, %p) {predicate = "eq"} : (tensor<?x4x?x?xf32>, tensor<?x4x?x?xf32>) -> tensor<?x4x?x?xi1>
  %nan = "lt2.compare"(%eq) {predicate = "not"} : (tensor<?x4x?x?xi1>) -> tensor<?x4x?x?xi1>
  %g = "lt2.where"(%nan, %zero, %p) : (tensor<?x4x?x?xi1>, tensor<f32>, tensor<?x4x?x?xf32>) -> tensor<?x4x?x?xf32>
  %o = "lt2.matmul"(%g, %v3) : (tensor<?x4x?x?xf32>, tensor<?x4x?x16xf32>) -> tensor<?x4x?x16xf32>
  %ot = "lt2.transpose"(%o) {perm = array<i64: 0, 2, 1, 3>} : (tensor<?x4x?x16xf32>) -> tensor<?x?x4x16xf32>
  %y = "lt2.reshape"(%ot) {shape = ["batch", "seq", "64"]} : (tensor<?x?x4x16xf32>) -> tensor<?x?x64xf32>
  return %y : tensor<?x?x64xf32>
}
func.func @no_guard_bool_mask(%q: tensor<?x2x?x8xf32>, %kt: tensor<?x2x8x?xf32>, %v: tensor<?x2x?x8xf32>, %m: tensor<?x1x?x?xi1>) -> tensor<?x?x16xf32> {
  %c = "lt2.constant"() {value = dense<-3.40282347E+38> : tensor<f32>} : () -> tensor<f32>
  %sc = "lt2.matmul"(%q, %kt) : (tensor<?x2x?x8xf32>, tensor<?x2x8x?xf32>) -> tensor<?x2x?x?xf32>
  %w = "lt2.where"(%m, %sc, %c) : (tensor<?x1x?x?xi1>, tensor<?x2x?x?xf32>, tensor<f32>) -> tensor<?x2x?x?xf32>
  %p = "lt2.softmax"(%w) {axis = -1 : i64} : (tensor<?x2x?x?xf32>) -> tensor<?x2x?x?xf32>
  %o = "lt2.matmul"(%p, %v) : (tensor<?x2x?x?xf32>, tensor<?x2x?x8xf32>) -> tensor<?x2x?x8xf32>
  %ot = "lt2.transpose"(%o) {perm = array<i64: 0, 2, 1, 3>} : (tensor<?x2x?x8xf32>) -> tensor<?x?x2x8xf32>
  %y = "lt2.reshape"(%ot) {shape = ["b", "s", "16"]} : (tensor<?x?x2x8xf32>) -> tensor<?x?x16xf32>
  return %y : tensor<?x?x16xf32>
}
func.func @other_reader(%q: tensor<?x2x?x8xf32>, %kt: tensor<?x2x8x?xf32>, %v: tensor<?x2x?x8xf32>) -> (tensor<?x?x16xf32>, tensor<?x2x?x?xf32>) {
  %sc = "lt2.matmul"(%q, %kt) : (tensor<?x2x?x8xf32>, tensor<?x2x8x?xf32>) -> tensor<?x2x?x?xf32>
  %p = "lt2.softmax"(%sc) {axis = 3 : i64} : (tensor<?x2x?x?xf32>) -> tensor<?x2x?x?xf32>
  %o = "lt2.matmul"(%p, %v) : (tensor<?x2x?x?xf32>, tensor<?x2x?x8xf32>) -> tensor<?x2x?x8xf32>
  %ot = "lt2.transpose"(%o) {perm = array<i64: 0, 2, 1, 3>} : (tensor<?x2x?x8xf32>) -> tensor<?x?x2x8xf32>
  %y = "lt2.reshape"(%ot) {shape = ["b", "s", "16"]} : (tensor<?x?x2x8xf32>) -> tensor<?x?x16xf32>
  return %y, %p : tensor<?x?x16xf32>, tensor<?x2x?x?xf32>
}
