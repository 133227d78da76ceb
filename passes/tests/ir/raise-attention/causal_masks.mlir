// passes: raise-attention, canonicalize
// Decomposed attention (per-head transposes, q.k^T, scale, causal mask, softmax, .v) becomes one
// lt2.attention: with the boolean mask not(j > i) (window -1), with the GQA repeat of k and v
// (2 kv heads for 4 query heads) and the sliding-window mask and(causal, i - j < 3) (window 2).
// The third one masks with not(i > j), the anti-causal mask, and is left alone.
func.func @main(%q: tensor<?x?x32xf32>, %k: tensor<?x?x32xf32>, %v: tensor<?x?x32xf32>, %kg: tensor<?x?x16xf32>, %vg: tensor<?x?x16xf32>) -> (tensor<?x?x32xf32>, tensor<?x?x32xf32>, tensor<?x?x32xf32>) {
  %r = "lt2.range"() {delta = 1 : i64, size = "seq", start = 0 : i64} : () -> tensor<?xi64>
  %j = "lt2.reshape"(%r) {shape = ["1", "seq"]} : (tensor<?xi64>) -> tensor<1x?xi64>
  %i = "lt2.reshape"(%r) {shape = ["seq", "1"]} : (tensor<?xi64>) -> tensor<?x1xi64>
  %future = "lt2.compare"(%j, %i) {predicate = "gt"} : (tensor<1x?xi64>, tensor<?x1xi64>) -> tensor<?x?xi1>
  %causal = "lt2.compare"(%future) {predicate = "not"} : (tensor<?x?xi1>) -> tensor<?x?xi1>
  %dist = "lt2.sub"(%i, %j) : (tensor<?x1xi64>, tensor<1x?xi64>) -> tensor<?x?xi64>
  %three = "lt2.constant"() {value = dense<3> : tensor<i64>} : () -> tensor<i64>
  %near = "lt2.compare"(%dist, %three) {predicate = "lt"} : (tensor<?x?xi64>, tensor<i64>) -> tensor<?x?xi1>
  %window = "lt2.compare"(%causal, %near) {predicate = "and"} : (tensor<?x?xi1>, tensor<?x?xi1>) -> tensor<?x?xi1>
  %past = "lt2.compare"(%i, %j) {predicate = "gt"} : (tensor<?x1xi64>, tensor<1x?xi64>) -> tensor<?x?xi1>
  %anti = "lt2.compare"(%past) {predicate = "not"} : (tensor<?x?xi1>) -> tensor<?x?xi1>
  %scale = "lt2.constant"() {value = dense<2.500000e-01> : tensor<f32>} : () -> tensor<f32>
  %min = "lt2.constant"() {value = dense<-3.40282347E+38> : tensor<f32>} : () -> tensor<f32>
  %q4 = "lt2.reshape"(%q) {shape = ["batch", "seq", "2", "16"]} : (tensor<?x?x32xf32>) -> tensor<?x?x2x16xf32>
  %k4 = "lt2.reshape"(%k) {shape = ["batch", "seq", "2", "16"]} : (tensor<?x?x32xf32>) -> tensor<?x?x2x16xf32>
  %v4 = "lt2.reshape"(%v) {shape = ["batch", "seq", "2", "16"]} : (tensor<?x?x32xf32>) -> tensor<?x?x2x16xf32>
  %qt = "lt2.transpose"(%q4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<?x?x2x16xf32>) -> tensor<?x2x?x16xf32>
  %kt = "lt2.transpose"(%k4) {perm = array<i64: 0, 2, 3, 1>} : (tensor<?x?x2x16xf32>) -> tensor<?x2x16x?xf32>
  %vt = "lt2.transpose"(%v4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<?x?x2x16xf32>) -> tensor<?x2x?x16xf32>
  %s = "lt2.matmul"(%qt, %kt) : (tensor<?x2x?x16xf32>, tensor<?x2x16x?xf32>) -> tensor<?x2x?x?xf32>
  %ss = "lt2.mul"(%s, %scale) : (tensor<?x2x?x?xf32>, tensor<f32>) -> tensor<?x2x?x?xf32>
  %sm = "lt2.where"(%causal, %ss, %min) : (tensor<?x?xi1>, tensor<?x2x?x?xf32>, tensor<f32>) -> tensor<?x2x?x?xf32>
  %p = "lt2.softmax"(%sm) {axis = 3 : i64} : (tensor<?x2x?x?xf32>) -> tensor<?x2x?x?xf32>
  %o = "lt2.matmul"(%p, %vt) : (tensor<?x2x?x?xf32>, tensor<?x2x?x16xf32>) -> tensor<?x2x?x16xf32>
  %ot = "lt2.transpose"(%o) {perm = array<i64: 0, 2, 1, 3>} : (tensor<?x2x?x16xf32>) -> tensor<?x?x2x16xf32>
  %out = "lt2.reshape"(%ot) {shape = ["batch", "seq", "32"]} : (tensor<?x?x2x16xf32>) -> tensor<?x?x32xf32>
  %q4b = "lt2.reshape"(%q) {shape = ["batch", "seq", "4", "8"]} : (tensor<?x?x32xf32>) -> tensor<?x?x4x8xf32>
  %k4b = "lt2.reshape"(%kg) {shape = ["batch", "seq", "2", "8"]} : (tensor<?x?x16xf32>) -> tensor<?x?x2x8xf32>
  %v4b = "lt2.reshape"(%vg) {shape = ["batch", "seq", "2", "8"]} : (tensor<?x?x16xf32>) -> tensor<?x?x2x8xf32>
  %qtb = "lt2.transpose"(%q4b) {perm = array<i64: 0, 2, 1, 3>} : (tensor<?x?x4x8xf32>) -> tensor<?x4x?x8xf32>
  %ktb = "lt2.transpose"(%k4b) {perm = array<i64: 0, 2, 3, 1>} : (tensor<?x?x2x8xf32>) -> tensor<?x2x8x?xf32>
  %kr1 = "lt2.reshape"(%ktb) {shape = ["batch", "2", "1", "8", "seq"]} : (tensor<?x2x8x?xf32>) -> tensor<?x2x1x8x?xf32>
  %kr2 = "lt2.expand"(%kr1) {shape = ["batch", "2", "2", "8", "seq"]} : (tensor<?x2x1x8x?xf32>) -> tensor<?x2x2x8x?xf32>
  %kr3 = "lt2.reshape"(%kr2) {shape = ["batch", "4", "8", "seq"]} : (tensor<?x2x2x8x?xf32>) -> tensor<?x4x8x?xf32>
  %vtb = "lt2.transpose"(%v4b) {perm = array<i64: 0, 2, 1, 3>} : (tensor<?x?x2x8xf32>) -> tensor<?x2x?x8xf32>
  %vr1 = "lt2.reshape"(%vtb) {shape = ["batch", "2", "1", "seq", "8"]} : (tensor<?x2x?x8xf32>) -> tensor<?x2x1x?x8xf32>
  %vr2 = "lt2.expand"(%vr1) {shape = ["batch", "2", "2", "seq", "8"]} : (tensor<?x2x1x?x8xf32>) -> tensor<?x2x2x?x8xf32>
  %vr3 = "lt2.reshape"(%vr2) {shape = ["batch", "4", "seq", "8"]} : (tensor<?x2x2x?x8xf32>) -> tensor<?x4x?x8xf32>
  %sb = "lt2.matmul"(%qtb, %kr3) : (tensor<?x4x?x8xf32>, tensor<?x4x8x?xf32>) -> tensor<?x4x?x?xf32>
  %smb = "lt2.where"(%window, %sb, %min) : (tensor<?x?xi1>, tensor<?x4x?x?xf32>, tensor<f32>) -> tensor<?x4x?x?xf32>
  %pb = "lt2.softmax"(%smb) {axis = 3 : i64} : (tensor<?x4x?x?xf32>) -> tensor<?x4x?x?xf32>
  %ob = "lt2.matmul"(%pb, %vr3) : (tensor<?x4x?x?xf32>, tensor<?x4x?x8xf32>) -> tensor<?x4x?x8xf32>
  %otb = "lt2.transpose"(%ob) {perm = array<i64: 0, 2, 1, 3>} : (tensor<?x4x?x8xf32>) -> tensor<?x?x4x8xf32>
  %outb = "lt2.reshape"(%otb) {shape = ["batch", "seq", "32"]} : (tensor<?x?x4x8xf32>) -> tensor<?x?x32xf32>
  %sc = "lt2.matmul"(%qt, %kt) : (tensor<?x2x?x16xf32>, tensor<?x2x16x?xf32>) -> tensor<?x2x?x?xf32>
  %smc = "lt2.where"(%anti, %sc, %min) : (tensor<?x?xi1>, tensor<?x2x?x?xf32>, tensor<f32>) -> tensor<?x2x?x?xf32>
  %pc = "lt2.softmax"(%smc) {axis = 3 : i64} : (tensor<?x2x?x?xf32>) -> tensor<?x2x?x?xf32>
  %oc = "lt2.matmul"(%pc, %vt) : (tensor<?x2x?x?xf32>, tensor<?x2x?x16xf32>) -> tensor<?x2x?x16xf32>
  %otc = "lt2.transpose"(%oc) {perm = array<i64: 0, 2, 1, 3>} : (tensor<?x2x?x16xf32>) -> tensor<?x?x2x16xf32>
  %outc = "lt2.reshape"(%otc) {shape = ["batch", "seq", "32"]} : (tensor<?x?x2x16xf32>) -> tensor<?x?x32xf32>
  return %out, %outb, %outc : tensor<?x?x32xf32>, tensor<?x?x32xf32>, tensor<?x?x32xf32>
}
