// passes: fuse-silu-mul, canonicalize
// silu(g) * u and u * silu(h) fuse (the silus die); a silu with a second reader, a broadcast
// product, and a mul of two plain values are left alone.
func.func @main(%g: tensor<?x16xf32>, %u: tensor<?x16xf32>, %h: tensor<?x16xf32>, %r: tensor<16xf32>) -> (tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x16xf32>) {
  %s = "lt2.silu"(%g) : (tensor<?x16xf32>) -> tensor<?x16xf32>
  %a = "lt2.mul"(%s, %u) : (tensor<?x16xf32>, tensor<?x16xf32>) -> tensor<?x16xf32>
  %t = "lt2.silu"(%h) : (tensor<?x16xf32>) -> tensor<?x16xf32>
  %b = "lt2.mul"(%u, %t) : (tensor<?x16xf32>, tensor<?x16xf32>) -> tensor<?x16xf32>
  %k = "lt2.silu"(%u) : (tensor<?x16xf32>) -> tensor<?x16xf32>
  %c = "lt2.mul"(%k, %g) : (tensor<?x16xf32>, tensor<?x16xf32>) -> tensor<?x16xf32>
  %v = "lt2.silu"(%r) : (tensor<16xf32>) -> tensor<16xf32>
  %d = "lt2.mul"(%v, %g) : (tensor<16xf32>, tensor<?x16xf32>) -> tensor<?x16xf32>
  %e = "lt2.mul"(%g, %u) : (tensor<?x16xf32>, tensor<?x16xf32>) -> tensor<?x16xf32>
  return %a, %b, %c, %k, %d, %e : tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x16xf32>
}
