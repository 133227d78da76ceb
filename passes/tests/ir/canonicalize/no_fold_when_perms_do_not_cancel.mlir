// passes: canonicalize
func.func @main(%x: tensor<2x3x4xf32>) -> tensor<3x4x2xf32> {
  %t = "lt2.transpose"(%x) {perm = array<i64: 0, 2, 1>} : (tensor<2x3x4xf32>) -> tensor<2x4x3xf32>
  %u = "lt2.transpose"(%t) {perm = array<i64: 2, 1, 0>} : (tensor<2x4x3xf32>) -> tensor<3x4x2xf32>
  return %u : tensor<3x4x2xf32>
}
