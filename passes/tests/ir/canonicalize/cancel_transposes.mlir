// passes: canonicalize
func.func @main(%x: tensor<?x?x4xf32>) -> tensor<?x?x4xf32> {
  %w = "lt2.weight"() {name = "w"} : () -> tensor<4x1x4xf32>
  %t = "lt2.transpose"(%x) {perm = array<i64: 0, 2, 1>} : (tensor<?x?x4xf32>) -> tensor<?x4x?xf32>
  %u = "lt2.transpose"(%t) {perm = array<i64: 0, 2, 1>} : (tensor<?x4x?xf32>) -> tensor<?x?x4xf32>
  %y:2 = "lt2.causal_conv"(%u, %w) {activation = "silu", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<?x?x4xf32>, tensor<4x1x4xf32>) -> (tensor<?x?x4xf32>, tensor<?x4x3xf32>)
  return %y#0 : tensor<?x?x4xf32>
}
