// passes: canonicalize
// Repeated pure computations (the RoPE tables torch's exporter recomputes per layer) merge;
// ops that differ in an attribute or an operand stay apart.
func.func @main(%x: tensor<?x4xf32>, %y: tensor<?x4xf32>) -> (tensor<?x4xf32>, tensor<?x4xf32>, tensor<?x4xf32>, tensor<?x4xf32>) {
  %s1 = "lt2.sin"(%x) : (tensor<?x4xf32>) -> tensor<?x4xf32>
  %s2 = "lt2.sin"(%x) : (tensor<?x4xf32>) -> tensor<?x4xf32>
  %s3 = "lt2.sin"(%y) : (tensor<?x4xf32>) -> tensor<?x4xf32>
  %c1 = "lt2.cos"(%s1) : (tensor<?x4xf32>) -> tensor<?x4xf32>
  %c2 = "lt2.cos"(%s2) : (tensor<?x4xf32>) -> tensor<?x4xf32>
  %a = "lt2.add"(%c1, %c2) : (tensor<?x4xf32>, tensor<?x4xf32>) -> tensor<?x4xf32>
  %r1 = "lt2.reduce_sum"(%a) {axes = array<i64: 1>, keepdims = true} : (tensor<?x4xf32>) -> tensor<?x1xf32>
  %r2 = "lt2.reduce_sum"(%a) {axes = array<i64: 1>, keepdims = false} : (tensor<?x4xf32>) -> tensor<?xf32>
  %b = "lt2.mul"(%a, %r1) : (tensor<?x4xf32>, tensor<?x1xf32>) -> tensor<?x4xf32>
  %e = "lt2.expand"(%r2) {shape = ["batch", "4"]} : (tensor<?xf32>) -> tensor<?x4xf32>
  return %b, %s3, %c2, %e : tensor<?x4xf32>, tensor<?x4xf32>, tensor<?x4xf32>, tensor<?x4xf32>
}
