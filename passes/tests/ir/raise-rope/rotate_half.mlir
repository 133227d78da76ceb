// passes: raise-rope, canonicalize
// @main: HF's rotate_half RoPE at opset 18 on k [B, 2, L, 8] → lt2.rope over the half-angle
// tables. @different_angles: cos and sin of different angles → left alone.
func.func @main(%k: tensor<?x?x16xf32>, %f: tensor<1x?x4xf32>) -> tensor<?x2x?x8xf32> {
  %cat = "lt2.concat"(%f, %f) {axis = 2 : i64} : (tensor<1x?x4xf32>, tensor<1x?x4xf32>) -> tensor<1x?x8xf32>
  %sin = "lt2.sin"(%cat) : (tensor<1x?x8xf32>) -> tensor<1x?x8xf32>
  %s4 = "lt2.reshape"(%sin) {shape = ["1", "1", "seq", "8"]} : (tensor<1x?x8xf32>) -> tensor<1x1x?x8xf32>
  %cos = "lt2.cos"(%cat) : (tensor<1x?x8xf32>) -> tensor<1x?x8xf32>
  %c4 = "lt2.reshape"(%cos) {shape = ["1", "1", "seq", "8"]} : (tensor<1x?x8xf32>) -> tensor<1x1x?x8xf32>
  %k4 = "lt2.reshape"(%k) {shape = ["batch", "seq", "2", "8"]} : (tensor<?x?x16xf32>) -> tensor<?x?x2x8xf32>
  %x = "lt2.transpose"(%k4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<?x?x2x8xf32>) -> tensor<?x2x?x8xf32>
  %hi = "lt2.slice"(%x) {axes = array<i64: 3>, ends = array<i64: 9223372036854775807>, starts = array<i64: 4>, steps = array<i64: 1>} : (tensor<?x2x?x8xf32>) -> tensor<?x2x?x4xf32>
  %nhi = "lt2.neg"(%hi) : (tensor<?x2x?x4xf32>) -> tensor<?x2x?x4xf32>
  %lo = "lt2.slice"(%x) {axes = array<i64: 3>, ends = array<i64: 4>, starts = array<i64: 0>, steps = array<i64: 1>} : (tensor<?x2x?x8xf32>) -> tensor<?x2x?x4xf32>
  %r = "lt2.concat"(%nhi, %lo) {axis = 3 : i64} : (tensor<?x2x?x4xf32>, tensor<?x2x?x4xf32>) -> tensor<?x2x?x8xf32>
  %rs = "lt2.mul"(%r, %s4) : (tensor<?x2x?x8xf32>, tensor<1x1x?x8xf32>) -> tensor<?x2x?x8xf32>
  %xc = "lt2.mul"(%x, %c4) : (tensor<?x2x?x8xf32>, tensor<1x1x?x8xf32>) -> tensor<?x2x?x8xf32>
  %y = "lt2.add"(%xc, %rs) : (tensor<?x2x?x8xf32>, tensor<?x2x?x8xf32>) -> tensor<?x2x?x8xf32>
  return %y : tensor<?x2x?x8xf32>
}
func.func @different_angles(%k: tensor<?x?x16xf32>, %f: tensor<1x?x4xf32>, %g: tensor<1x?x4xf32>) -> tensor<?x2x?x8xf32> {
  %cf = "lt2.concat"(%f, %f) {axis = 2 : i64} : (tensor<1x?x4xf32>, tensor<1x?x4xf32>) -> tensor<1x?x8xf32>
  %cg = "lt2.concat"(%g, %g) {axis = 2 : i64} : (tensor<1x?x4xf32>, tensor<1x?x4xf32>) -> tensor<1x?x8xf32>
  %sin = "lt2.sin"(%cg) : (tensor<1x?x8xf32>) -> tensor<1x?x8xf32>
  %s4 = "lt2.reshape"(%sin) {shape = ["1", "1", "seq", "8"]} : (tensor<1x?x8xf32>) -> tensor<1x1x?x8xf32>
  %cos = "lt2.cos"(%cf) : (tensor<1x?x8xf32>) -> tensor<1x?x8xf32>
  %c4 = "lt2.reshape"(%cos) {shape = ["1", "1", "seq", "8"]} : (tensor<1x?x8xf32>) -> tensor<1x1x?x8xf32>
  %k4 = "lt2.reshape"(%k) {shape = ["batch", "seq", "2", "8"]} : (tensor<?x?x16xf32>) -> tensor<?x?x2x8xf32>
  %x = "lt2.transpose"(%k4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<?x?x2x8xf32>) -> tensor<?x2x?x8xf32>
  %hi = "lt2.slice"(%x) {axes = array<i64: 3>, ends = array<i64: 9223372036854775807>, starts = array<i64: 4>, steps = array<i64: 1>} : (tensor<?x2x?x8xf32>) -> tensor<?x2x?x4xf32>
  %nhi = "lt2.neg"(%hi) : (tensor<?x2x?x4xf32>) -> tensor<?x2x?x4xf32>
  %lo = "lt2.slice"(%x) {axes = array<i64: 3>, ends = array<i64: 4>, starts = array<i64: 0>, steps = array<i64: 1>} : (tensor<?x2x?x8xf32>) -> tensor<?x2x?x4xf32>
  %r = "lt2.concat"(%nhi, %lo) {axis = 3 : i64} : (tensor<?x2x?x4xf32>, tensor<?x2x?x4xf32>) -> tensor<?x2x?x8xf32>
  %rs = "lt2.mul"(%r, %s4) : (tensor<?x2x?x8xf32>, tensor<1x1x?x8xf32>) -> tensor<?x2x?x8xf32>
  %xc = "lt2.mul"(%x, %c4) : (tensor<?x2x?x8xf32>, tensor<1x1x?x8xf32>) -> tensor<?x2x?x8xf32>
  %y = "lt2.add"(%xc, %rs) : (tensor<?x2x?x8xf32>, tensor<?x2x?x8xf32>) -> tensor<?x2x?x8xf32>
  return %y : tensor<?x2x?x8xf32>
}
