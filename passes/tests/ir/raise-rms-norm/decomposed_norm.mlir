// passes: raise-rms-norm, canonicalize
func.func @main(%x: tensor<?x?x8xf32>) -> tensor<?x?x8xf32> {
  %two = "lt2.constant"() {value = dense<2.0> : tensor<f32>} : () -> tensor<f32>
  %eps = "lt2.constant"() {value = dense<1.0e-6> : tensor<f32>} : () -> tensor<f32>
  %w = "lt2.weight"() {name = "w"} : () -> tensor<8xf32>
  %sq = "lt2.pow"(%x, %two) : (tensor<?x?x8xf32>, tensor<f32>) -> tensor<?x?x8xf32>
  %m = "lt2.reduce_mean"(%sq) {axes = array<i64: 2>, keepdims = true} : (tensor<?x?x8xf32>) -> tensor<?x?x1xf32>
  %a = "lt2.add"(%m, %eps) : (tensor<?x?x1xf32>, tensor<f32>) -> tensor<?x?x1xf32>
  %s = "lt2.sqrt"(%a) : (tensor<?x?x1xf32>) -> tensor<?x?x1xf32>
  %d = "lt2.div"(%x, %s) : (tensor<?x?x8xf32>, tensor<?x?x1xf32>) -> tensor<?x?x8xf32>
  %y = "lt2.mul"(%d, %w) : (tensor<?x?x8xf32>, tensor<8xf32>) -> tensor<?x?x8xf32>
  return %y : tensor<?x?x8xf32>
}
