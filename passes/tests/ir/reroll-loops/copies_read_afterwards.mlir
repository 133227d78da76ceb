// passes: reroll-loops
// Two copies whose first copy's output is also read after them (as a per-loop output would be):
// a loop returns only the last carried value, so nothing is rerolled.
func.func @main(%x: tensor<?x8xf32>) -> (tensor<?x8xf32>, tensor<?x8xf32>) {
  %w = "lt2.weight"() {name = "w"} : () -> tensor<8x8xf32>
  %b0 = "lt2.linear"(%x, %w) {transpose_w = false} : (tensor<?x8xf32>, tensor<8x8xf32>) -> tensor<?x8xf32>
  %c0 = "lt2.silu"(%b0) : (tensor<?x8xf32>) -> tensor<?x8xf32>
  %s0 = "lt2.sigmoid"(%c0) : (tensor<?x8xf32>) -> tensor<?x8xf32>
  %d0 = "lt2.add"(%x, %s0) : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
  %b1 = "lt2.linear"(%d0, %w) {transpose_w = false} : (tensor<?x8xf32>, tensor<8x8xf32>) -> tensor<?x8xf32>
  %c1 = "lt2.silu"(%b1) : (tensor<?x8xf32>) -> tensor<?x8xf32>
  %s1 = "lt2.sigmoid"(%c1) : (tensor<?x8xf32>) -> tensor<?x8xf32>
  %d1 = "lt2.add"(%d0, %s1) : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
  return %d1, %s0 : tensor<?x8xf32>, tensor<?x8xf32>
}
