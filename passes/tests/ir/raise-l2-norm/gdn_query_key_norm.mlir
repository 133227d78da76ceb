// passes: raise-l2-norm, canonicalize
// GDN's per-head q/k normalisation x / sqrt(sum(x*x, last) + eps) becomes one rms_norm with a
// 1/sqrt(8) scale and eps/8; a sum over another axis, and a pow(x, 3), are left alone.
func.func @main(%x: tensor<?x?x2x8xf32>, %y: tensor<?x?x2x8xf32>) -> (tensor<?x?x2x8xf32>, tensor<?x?x2x8xf32>, tensor<?x?x2x8xf32>) {
  %sq = "lt2.mul"(%x, %x) : (tensor<?x?x2x8xf32>, tensor<?x?x2x8xf32>) -> tensor<?x?x2x8xf32>
  %s = "lt2.reduce_sum"(%sq) {axes = array<i64: 3>, keepdims = true} : (tensor<?x?x2x8xf32>) -> tensor<?x?x2x1xf32>
  %eps = "lt2.constant"() {value = dense<1.0e-6> : tensor<f32>} : () -> tensor<f32>
  %a = "lt2.add"(%s, %eps) : (tensor<?x?x2x1xf32>, tensor<f32>) -> tensor<?x?x2x1xf32>
  %r = "lt2.sqrt"(%a) : (tensor<?x?x2x1xf32>) -> tensor<?x?x2x1xf32>
  %n = "lt2.div"(%x, %r) : (tensor<?x?x2x8xf32>, tensor<?x?x2x1xf32>) -> tensor<?x?x2x8xf32>
  %sq2 = "lt2.mul"(%y, %y) : (tensor<?x?x2x8xf32>, tensor<?x?x2x8xf32>) -> tensor<?x?x2x8xf32>
  %s2 = "lt2.reduce_sum"(%sq2) {axes = array<i64: 2>, keepdims = true} : (tensor<?x?x2x8xf32>) -> tensor<?x?x1x8xf32>
  %a2 = "lt2.add"(%s2, %eps) : (tensor<?x?x1x8xf32>, tensor<f32>) -> tensor<?x?x1x8xf32>
  %r2 = "lt2.sqrt"(%a2) : (tensor<?x?x1x8xf32>) -> tensor<?x?x1x8xf32>
  %n2 = "lt2.div"(%y, %r2) : (tensor<?x?x2x8xf32>, tensor<?x?x1x8xf32>) -> tensor<?x?x2x8xf32>
  %three = "lt2.constant"() {value = dense<3.0> : tensor<f32>} : () -> tensor<f32>
  %cube = "lt2.pow"(%y, %three) : (tensor<?x?x2x8xf32>, tensor<f32>) -> tensor<?x?x2x8xf32>
  %s3 = "lt2.reduce_sum"(%cube) {axes = array<i64: 3>, keepdims = true} : (tensor<?x?x2x8xf32>) -> tensor<?x?x2x1xf32>
  %a3 = "lt2.add"(%s3, %eps) : (tensor<?x?x2x1xf32>, tensor<f32>) -> tensor<?x?x2x1xf32>
  %r3 = "lt2.sqrt"(%a3) : (tensor<?x?x2x1xf32>) -> tensor<?x?x2x1xf32>
  %n3 = "lt2.div"(%y, %r3) : (tensor<?x?x2x8xf32>, tensor<?x?x2x1xf32>) -> tensor<?x?x2x8xf32>
  return %n, %n2, %n3 : tensor<?x?x2x8xf32>, tensor<?x?x2x8xf32>, tensor<?x?x2x8xf32>
}
