// passes: raise-rms-norm, canonicalize
// torch's opset-18 RMSNorm: x * reciprocal(sqrt(mean(x^2) + eps)), then the scale (w first).
func.func @main(%x: tensor<?x?x32xf32>, %w: tensor<32xf32>) -> tensor<?x?x32xf32> {
  %two = "lt2.constant"() {value = dense<2.0> : tensor<f32>} : () -> tensor<f32>
  %eps = "lt2.constant"() {value = dense<1.0e-6> : tensor<f32>} : () -> tensor<f32>
  %p = "lt2.pow"(%x, %two) : (tensor<?x?x32xf32>, tensor<f32>) -> tensor<?x?x32xf32>
  %m = "lt2.reduce_mean"(%p) {axes = array<i64: 2>, keepdims = true} : (tensor<?x?x32xf32>) -> tensor<?x?x1xf32>
  %a = "lt2.add"(%m, %eps) : (tensor<?x?x1xf32>, tensor<f32>) -> tensor<?x?x1xf32>
  %s = "lt2.sqrt"(%a) : (tensor<?x?x1xf32>) -> tensor<?x?x1xf32>
  %r = "lt2.reciprocal"(%s) : (tensor<?x?x1xf32>) -> tensor<?x?x1xf32>
  %n = "lt2.mul"(%x, %r) : (tensor<?x?x32xf32>, tensor<?x?x1xf32>) -> tensor<?x?x32xf32>
  %y = "lt2.mul"(%w, %n) : (tensor<32xf32>, tensor<?x?x32xf32>) -> tensor<?x?x32xf32>
  return %y : tensor<?x?x32xf32>
}
